"""GPU checks that CPU tests cannot make: attention kernels, bf16, the torch KMeans path.

Run on a machine with a GPU (``python benchmarks/device_check.py``); on CPU it runs the same
checks on the CPU so the script itself stays tested. Prints one JSON line per check.

1. bidirectionality holds under every installed attention kernel (eager, sdpa, flash_attention_2);
2. the kernels agree with eager on LENS embeddings (fp32 tolerance 1e-4, bf16 reported);
3. the torch Lloyd KMeans (used on GPU) finds clusters as good as faiss' on CPU (inertia ratio);
4. encoding throughput of a 7B-shaped Mistral layer slice in bf16.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from lens_embed import build_lens_model, encode, load_lens_model  # noqa: E402
from lens_embed.models.clustering import faiss_kmeans, lloyd_kmeans, nearest_centroid  # noqa: E402
from tiny_models import build_decoder  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TEXTS = [
    "what is rba",
    "the quick brown fox jumps over the lazy dog",
    "a man is playing a guitar on the street",
]


def kernels() -> list[str]:
    available = ["eager", "sdpa"]
    if DEVICE == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        available.append("flash_attention_2")
    return available


def check_kernels(base: Path, work: Path) -> None:
    reference = None
    for kernel in kernels():
        dtype = torch.bfloat16 if kernel == "flash_attention_2" else torch.float32
        out = work / kernel
        build_lens_model(base, n_clusters=16, output_dir=out, attn_implementation=kernel, dtype=dtype)
        model = load_lens_model(
            out, device=DEVICE, model_kwargs={"attn_implementation": kernel, "dtype": dtype}
        )
        first = encode(model, ["fox jumps over the lazy dog"])
        second = encode(model, ["fox jumps over the lazy cat"])
        embeddings = encode(model, TEXTS, query=True)
        diff = None if reference is None else float(abs(embeddings - reference).max())
        reference = embeddings if reference is None else reference
        print(
            json.dumps(
                {
                    "check": "kernel",
                    "kernel": kernel,
                    "dtype": str(dtype),
                    "device": DEVICE,
                    "later_token_changes_embedding": bool(abs(first - second).max() > 0),
                    "max_abs_diff_vs_eager": diff,
                }
            )
        )


def check_kmeans() -> None:
    generator = torch.Generator().manual_seed(0)
    data = torch.randn(20000, 256, generator=generator)
    results = {}
    for name, run in (
        ("faiss_cpu", lambda: faiss_kmeans(data, 500, n_iter=20, seed=0, verbose=False)),
        ("torch_" + DEVICE, lambda: lloyd_kmeans(data.to(DEVICE), 500, n_iter=20, seed=0).cpu()),
    ):
        start = time.perf_counter()
        centroids = run()
        seconds = time.perf_counter() - start
        inertia = float((data - centroids[nearest_centroid(data, centroids)]).pow(2).sum())
        results[name] = {"seconds": round(seconds, 2), "inertia": round(inertia, 1)}
    print(json.dumps({"check": "kmeans", **results}))


def check_throughput(work: Path) -> None:
    if DEVICE != "cuda":
        print(json.dumps({"check": "throughput", "skipped": "no GPU"}))
        return
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=4,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=32000,
        tie_word_embeddings=False,
    )
    base = work / "mistral-slice"
    MistralForCausalLM(config).to(torch.bfloat16).save_pretrained(base)
    build_decoder(work / "tok")  # reuse a tiny tokenizer: throughput depends on lengths, not on token ids
    for file in (work / "tok").glob("tok*"):
        (base / file.name).write_bytes(file.read_bytes())
    model = build_lens_model(
        base, n_clusters=4000, dtype=torch.bfloat16, attn_implementation="sdpa", device=DEVICE
    )
    texts = ["the quick brown fox jumps over the lazy dog " * 20] * 256
    encode(model, texts[:16])
    torch.cuda.synchronize()
    start = time.perf_counter()
    encode(model, texts, batch_size=64)
    torch.cuda.synchronize()
    print(
        json.dumps(
            {
                "check": "throughput",
                "layers": 4,
                "texts_per_second": round(256 / (time.perf_counter() - start), 1),
                "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            }
        )
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        work = Path(name)
        base = build_decoder(work / "base", "mistral", hidden_size=64)
        check_kernels(base, work)
        check_kmeans()
        check_throughput(work)


if __name__ == "__main__":
    main()
