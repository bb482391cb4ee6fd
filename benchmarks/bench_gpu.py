"""Encoding speed of a Mistral-7B-shaped LENS model with random weights: no download needed.

Three pipelines embed the same texts (short instructed queries, 30-200-token passages,
512-token documents) with the same random weights:

(a) ``authors``: the authors' procedure written out plainly: fp16, left padding, a fixed batch
    size in input order, full [B, L, K] logits through an ``nn.Linear`` head, ``max(log(1 +
    relu(logits)) * mask)`` with their shifted/query masks (as in tests/test_parity.py);
(b) ``lens-embed``: the library as a user gets it: the backbone loaded with its defaults, the
    router ``lens_embed.encode`` (sentence-transformers sorts by length), batch size 32;
(c) ``lens-embed-best``: half precision (bf16), SDPA (or flash_attention_2 when installed),
    token-budget batches (``lens_embed.models.batching.encode_bucketed``), the chunked head.

Reported per pipeline: tokens/s (real tokens, no padding), MFU (model FLOPs from the layer
shapes over the real tokens, divided by the card's dense bf16 peak), peak GPU memory, time to
first embedding (model load plus one query), and the max abs difference of the embeddings
between pipelines. ``--scale tiny`` runs the same code with tiny shapes on a CPU (the test).

    python benchmarks/bench_gpu.py                       # the GPU measurement (make bench-gpu)
    python benchmarks/bench_gpu.py --scale tiny --dtype float32 --texts 12   # CPU smoke run
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lens_embed.base.prompts import DEFAULT_QUERY_INSTRUCTION, QUERY_TOKEN, query_prompt

VOCAB = 32003  # Mistral's 32000 + <instruct>, <query>, <response>
SHAPES = {
    "7b": {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "clusters": 8000,
        "max_length": 512,
    },
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "clusters": 64,
        "max_length": 64,
    },
}
# Dense bf16 peaks (TFLOP/s) from the vendors' datasheets; MFU divides by these.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}
GROUPS = ("queries", "passages", "documents")


@dataclass
class Workload:
    """The texts of each group (word ``w{id}`` = one token) and their token counts as the model sees them."""

    texts: dict[str, list[str]]
    tokens: dict[str, list[int]]


def synthetic_tokenizer(directory: Path):
    """A word-level tokenizer over Mistral's vocabulary size: BOS + words + EOS, pad = unk, LENS tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from lens_embed.models.backbone import prepare_tokenizer

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i for i in range(3, VOCAB - 3)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    prepare_tokenizer(tokenizer, decoder=True)
    assert len(tokenizer) == VOCAB, len(tokenizer)
    tokenizer.save_pretrained(directory)
    return tokenizer


def write_random_backbone(directory: Path, shape: dict[str, int], layers: int | None, device: str) -> None:
    """A bidirectional Mistral of the given shape with random bf16 weights, saved with its tokenizer."""
    from transformers import MistralConfig, MistralModel

    from lens_embed.models.backbone import make_bidirectional

    config = MistralConfig(
        vocab_size=VOCAB,
        hidden_size=shape["hidden_size"],
        intermediate_size=shape["intermediate_size"],
        num_hidden_layers=layers or shape["num_hidden_layers"],
        num_attention_heads=shape["num_attention_heads"],
        num_key_value_heads=shape["num_key_value_heads"],
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    make_bidirectional(config)
    torch.manual_seed(0)
    with torch.device(device):
        model = MistralModel(config).to(torch.bfloat16)
    model.save_pretrained(directory)
    synthetic_tokenizer(directory)
    del model


def make_workload(n_texts: int, max_length: int, seed: int, tokenizer, prompt: str) -> Workload:
    """Thirds of short queries (4-24 words), passages (30-200 tokens) and max-length documents."""
    rng = np.random.default_rng(seed)
    per_group = max(1, n_texts // 3)
    words = {
        "queries": rng.integers(4, 25, per_group),
        "passages": rng.integers(min(28, max_length - 2), min(199, max_length - 2), per_group),
        "documents": np.full(per_group, max_length - 2),
    }
    texts = {
        g: [" ".join(f"w{t}" for t in rng.integers(3, VOCAB - 3, n)) for n in counts]
        for g, counts in words.items()
    }
    tokens = {}
    for group, items in texts.items():
        prefixed = [prompt + t for t in items] if group == "queries" else items
        tokens[group] = [
            len(ids) for ids in tokenizer(prefixed, truncation=True, max_length=max_length)["input_ids"]
        ]
    return Workload(texts, tokens)


def model_flops(lengths: list[int], shape: dict[str, int], layers: int, clusters: int) -> float:
    """Forward FLOPs of the real tokens: projections, MLP, bidirectional attention, the K-way head."""
    hidden, inter = shape["hidden_size"], shape["intermediate_size"]
    kv = hidden * shape["num_key_value_heads"] // shape["num_attention_heads"]
    per_token = (
        layers * 2 * (hidden * (hidden + 2 * kv) + hidden * hidden + 3 * hidden * inter)
        + 2 * hidden * clusters
    )
    return float(sum(n * per_token + layers * 4 * n * n * hidden for n in lengths))


def random_head(clusters: int, hidden: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroids on the scale of real ones (logits of order 1) and a token -> cluster map."""
    generator = torch.Generator().manual_seed(1)
    centroids = torch.randn(clusters, hidden, generator=generator) / hidden**0.5
    return centroids, torch.randint(0, clusters, (VOCAB,), generator=generator)


def authors_pipeline(
    base: Path, centroids: torch.Tensor, dtype: torch.dtype, device: str, batch_size: int, max_length: int
) -> tuple[Callable, Callable]:
    """(load, embed) for the authors' procedure; ``embed(texts, query)`` returns normalised rows."""
    from transformers import AutoModel, AutoTokenizer

    state: dict[str, object] = {}

    def load() -> None:
        tokenizer = AutoTokenizer.from_pretrained(base)
        tokenizer.padding_side = "left"
        model = AutoModel.from_pretrained(base, dtype=dtype).to(device).eval()
        head = torch.nn.Linear(centroids.shape[1], centroids.shape[0], bias=False, dtype=dtype, device=device)
        head.weight.data.copy_(centroids)
        state.update(
            tokenizer=tokenizer, model=model, head=head, query_id=tokenizer.convert_tokens_to_ids(QUERY_TOKEN)
        )

    @torch.no_grad()
    def embed(texts: list[str], query: bool) -> np.ndarray:
        tokenizer, model, head = state["tokenizer"], state["model"], state["head"]
        if query:
            texts = [f"{query_prompt(DEFAULT_QUERY_INSTRUCTION)}{t}" for t in texts]
        out = []
        for start in range(0, len(texts), batch_size):
            inputs = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            logits = head(model(**inputs).last_hidden_state)  # [B, L, K]
            if query:
                mask = torch.zeros_like(inputs["input_ids"])
                for row, ids in enumerate(inputs["input_ids"]):
                    mask[row, (ids == state["query_id"]).nonzero()[-1].item() : -2] = 1
            else:
                mask = inputs["attention_mask"].clone()
                mask[:, -2:] = 0
            pooled = torch.max(torch.log(1 + torch.relu(logits)) * mask.unsqueeze(-1), dim=1).values
            out.append(F.normalize(pooled.float(), p=2, dim=1).cpu().numpy())
        return np.concatenate(out)

    return load, embed


def lens_pipeline(
    base: Path,
    centroids: torch.Tensor,
    token_clusters: torch.Tensor,
    device: str,
    dtype: torch.dtype | None,
    attn: str | None,
    batch_size: int,
    max_tokens: int | None,
    max_length: int,
) -> tuple[Callable, Callable]:
    """(load, embed) for lens-embed's modules: defaults (as is) or tuned (dtype, attention, token budget)."""
    from lens_embed.models.batching import encode_bucketed
    from lens_embed.models.build import assemble_lens_model, load_backbone
    from lens_embed.models.model import encode
    from lens_embed.modules import LexiconPooling

    state: dict[str, object] = {}

    def load() -> None:
        transformer, _ = load_backbone(base, max_seq_length=max_length, attn_implementation=attn, dtype=dtype)
        pooling = LexiconPooling(
            n_clusters=centroids.shape[0],
            hidden_size=centroids.shape[1],
            query_token_id=transformer.tokenizer.convert_tokens_to_ids(QUERY_TOKEN),
            next_token_outputs=True,
            vocab_size=VOCAB,
        )
        pooling.set_head(centroids, token_clusters)
        state["model"] = assemble_lens_model(transformer, pooling, device=device).eval()

    def embed(texts: list[str], query: bool) -> np.ndarray:
        model = state["model"]
        instruction = DEFAULT_QUERY_INSTRUCTION if query else None
        if max_tokens is None:
            return encode(
                model,
                texts,
                query=query,
                instruction=instruction,
                batch_size=batch_size,
                show_progress_bar=False,
            )
        return encode_bucketed(model, texts, query=query, instruction=instruction, max_tokens=max_tokens)

    return load, embed


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(
    name: str,
    load: Callable,
    embed: Callable,
    work: Workload,
    device: str,
    flops: dict[str, float],
    peak_tflops: float | None,
) -> tuple[dict[str, object], np.ndarray]:
    """Load, embed one query (time to first embedding), warm up, then time each group of texts."""
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    load()
    embed(work.texts["queries"][:1], True)
    synchronize(device)
    first = time.perf_counter() - start
    embed(work.texts["passages"][:4], False)  # warm-up: kernels chosen, allocator primed
    row: dict[str, object] = {"pipeline": name, "time_to_first_embedding_s": round(first, 3)}
    outputs, seconds = [], {}
    for group in GROUPS:
        synchronize(device)
        begin = time.perf_counter()
        outputs.append(embed(work.texts[group], group == "queries"))
        synchronize(device)
        seconds[group] = time.perf_counter() - begin
    total_tokens = sum(sum(work.tokens[g]) for g in GROUPS)
    total_seconds = sum(seconds.values())
    row["tokens_per_s"] = round(total_tokens / total_seconds, 1)
    for group in GROUPS:
        row[f"{group}_tokens_per_s"] = round(sum(work.tokens[group]) / seconds[group], 1)
    row["mfu"] = (
        None if peak_tflops is None else round(sum(flops.values()) / total_seconds / (peak_tflops * 1e12), 4)
    )
    row["documents_mfu"] = (
        None
        if peak_tflops is None
        else round(flops["documents"] / seconds["documents"] / (peak_tflops * 1e12), 4)
    )
    row["peak_gpu_memory_gib"] = (
        round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.startswith("cuda") else None
    )
    return row, np.concatenate(outputs).astype(np.float64)


def device_peak(device: str, override: float | None) -> tuple[str, float | None]:
    """The card's name and its dense bf16 peak (None on CPU or an unknown card without --peak-tflops)."""
    if not device.startswith("cuda"):
        return "cpu", override
    name = torch.cuda.get_device_name()
    found = next((peak for key, peak in PEAK_TFLOPS.items() if key in name), None)
    return name, override if override is not None else found


def best_attention(device: str) -> str:
    import importlib.util

    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def run(args: argparse.Namespace) -> dict[str, object]:
    """Build the random model in a temporary folder, measure the three pipelines, compare their outputs."""
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    shape = SHAPES[args.scale]
    layers = args.layers or shape["num_hidden_layers"]
    clusters = args.clusters or shape["clusters"]
    max_length = shape["max_length"]
    forced = getattr(torch, args.dtype) if args.dtype else None
    card, peak = device_peak(device, args.peak_tflops)
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        base = Path(folder)
        write_random_backbone(base, shape, layers, device)
        from transformers import AutoTokenizer

        work = make_workload(
            args.texts,
            max_length,
            args.seed,
            AutoTokenizer.from_pretrained(base),
            query_prompt(DEFAULT_QUERY_INSTRUCTION),
        )
        flops = {g: model_flops(work.tokens[g], shape, layers, clusters) for g in GROUPS}
        centroids, token_clusters = random_head(clusters, shape["hidden_size"])
        pipelines = {
            "authors": authors_pipeline(
                base, centroids, forced or torch.float16, device, args.batch_size, max_length
            ),
            "lens-embed": lens_pipeline(
                base, centroids, token_clusters, device, forced, None, args.batch_size, None, max_length
            ),
            "lens-embed-best": lens_pipeline(
                base,
                centroids,
                token_clusters,
                device,
                forced or torch.bfloat16,
                best_attention(device),
                args.batch_size,
                args.max_tokens,
                max_length,
            ),
        }
        rows, outputs = [], {}
        for name, (load, embed) in pipelines.items():
            row, outputs[name] = measure(name, load, embed, work, device, flops, peak)
            rows.append(row)
            gc.collect()
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    names = list(outputs)
    diffs = {
        f"{a} vs {b}": float(np.abs(outputs[a] - outputs[b]).max())
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    }
    return {
        "device": card,
        "peak_tflops_bf16_dense": peak,
        "scale": args.scale,
        "layers": layers,
        "clusters": clusters,
        "texts_per_group": len(work.texts["queries"]),
        "tokens": {g: sum(work.tokens[g]) for g in GROUPS},
        "batch_size": args.batch_size,
        "max_tokens_per_batch": args.max_tokens,
        "dtype_override": args.dtype,
        "pipelines": rows,
        "max_abs_diff": diffs,
    }


def markdown(report: dict[str, object]) -> str:
    """The report as a table for benchmarks/RESULTS.md."""
    lines = [
        f"device: {report['device']}; "
        f"peak used for MFU: {report['peak_tflops_bf16_dense']} TFLOP/s (bf16 dense); "
        f"{report['layers']} layers, K = {report['clusters']}, tokens per group {report['tokens']}",
        "",
        "| pipeline | tokens/s | MFU | MFU (512-token docs) | peak GPU memory (GiB) "
        "| time to first embedding (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["pipelines"]:
        lines.append(
            f"| {row['pipeline']} | {row['tokens_per_s']} | {row['mfu']} | {row['documents_mfu']} | "
            f"{row['peak_gpu_memory_gib']} | {row['time_to_first_embedding_s']} |"
        )
    lines += [
        "",
        "max abs difference of embeddings: "
        + ", ".join(f"{k}: {v:.2e}" for k, v in report["max_abs_diff"].items()),
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scale", choices=sorted(SHAPES), default="7b", help="layer shapes (tiny: CPU smoke run)"
    )
    parser.add_argument("--layers", type=int, default=None, help="fewer layers than the shape's (quick runs)")
    parser.add_argument("--clusters", type=int, default=None, help="K (default: 8000 for 7b, 64 for tiny)")
    parser.add_argument(
        "--texts", type=int, default=1536, help="texts in all, split in thirds across the groups"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="fixed batch size of (a) and (b)")
    parser.add_argument("--max-tokens", type=int, default=65536, help="padded tokens per batch of (c)")
    parser.add_argument(
        "--dtype", default=None, help="force one dtype on all pipelines (float32 for the CPU test)"
    )
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="peak to divide by (else from the card)"
    )
    add_run_arguments(parser, "where the random checkpoint is written (~15 GB for 7b)")
    return parser.parse_args(argv)


def add_run_arguments(parser: argparse.ArgumentParser, workdir_help: str) -> None:
    """The options of every check on a random model: its seed, the folder its model is written in, and
    the JSON file :func:`run_and_publish` writes."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help=workdir_help)
    parser.add_argument("--json", default=None, help="also write the report to this JSON file")


def run_and_publish(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace], dict[str, Any]],
    markdown: Callable[[dict[str, Any]], str],
) -> dict[str, Any]:
    """Run a check on its parsed options, print its report as JSON and as its markdown table, and write the
    JSON to ``--json`` where asked (the options :func:`add_run_arguments` declares)."""
    report = run(args)
    print(json.dumps(report, indent=2))
    print(markdown(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run_and_publish(parse_args(argv), run, markdown)


if __name__ == "__main__":
    main()
