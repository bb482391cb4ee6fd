"""Benchmarks: pooling cost (chunked vs full logits), encoding throughput of a LENS model, and the
lexicon head's overhead: LENS-MiniLM against the same MiniLM pooled dense (mean), as the median of
per-batch time ratios, each batch encoded by both back to back (2000 STSBenchmark sentences when
--data has them), with the head's FLOP share as the floor that ratio can reach.

Run with `make bench` (MODEL=path to benchmark another model than the embedded default).
Peak memory of the pooling is measured as the process' peak RSS growth in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from lens_embed.models.pooling import masked_max_logits

BATCH, SEQ, HIDDEN, K = 32, 512, 1024, 8000


def pool_once(mode: str) -> dict[str, float]:
    """Time one pooling of [BATCH, SEQ, HIDDEN] states against K centroids; report peak RSS growth."""
    torch.manual_seed(0)
    hidden, centroids = torch.randn(BATCH, SEQ, HIDDEN), torch.randn(K, HIDDEN)
    mask = torch.ones(BATCH, SEQ, dtype=torch.bool)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with torch.no_grad():
        if mode == "chunked":
            masked_max_logits(hidden, centroids, mask)
        else:
            (hidden @ centroids.T).masked_fill(~mask.unsqueeze(-1), float("-inf")).max(dim=1)
    seconds = time.perf_counter() - start
    peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return {"mode": mode, "seconds": round(seconds, 3), "peak_rss_growth_mib": round(peak_mib, 1)}


def encode_throughput(model_path: str, n_texts: int) -> dict[str, float]:
    from lens_embed import encode, load_lens_model

    model = load_lens_model(model_path)
    texts = [f"sentence number {i} about a man playing a guitar on a quiet street" for i in range(n_texts)]
    encode(model, texts[:32])  # warm-up
    start = time.perf_counter()
    encode(model, texts, batch_size=64)
    seconds = time.perf_counter() - start
    return {"model": model_path, "texts": n_texts, "texts_per_second": round(n_texts / seconds, 1)}


def sts_sentences(data: str, n_texts: int) -> list[str]:
    """Real sentences (STSBenchmark test pairs, flattened), else synthetic ones of similar length."""
    path = Path(data) / "sts" / "STSBenchmark" / "test.jsonl"
    if not path.is_file():
        return [f"sentence number {i} about a man playing a guitar on a quiet street" for i in range(n_texts)]
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [text for row in rows for text in (row["sentence1"], row["sentence2"])][:n_texts]


def head_overhead(
    model_path: str, texts: list[str], rounds: int = 3, batch_size: int = 64
) -> dict[str, float]:
    """LENS encoding time over the same backbone's dense (mean-pooled) encoding, batch by batch.

    The texts are sorted by length as sentence-transformers sorts them and cut into batches; each batch
    is encoded by both models back to back, alternating which goes first, so drifts in the machine's
    speed (seconds long on shared machines) cancel within each pair. The ratio is the median of the
    per-batch ratios over all rounds. ``head_flop_share`` is the arithmetic floor at equal efficiency:
    the head's FLOPs (pooled tokens x 2HK) over the backbone's on the same padded batches.
    """
    from sentence_transformers import SentenceTransformer

    from lens_embed import encode, load_lens_model
    from lens_embed.base.defaults import minilm_path

    lens = load_lens_model(model_path)
    dense = SentenceTransformer(str(minilm_path()))
    ordered = sorted(texts, key=len, reverse=True)
    batches = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    runs = {
        "lens": lambda batch: encode(lens, batch, batch_size=batch_size),
        "dense": lambda batch: dense.encode(batch, batch_size=batch_size),
    }
    for run in runs.values():
        run(batches[0])  # warm-up
    ratios, totals = [], {name: 0.0 for name in runs}
    for _ in range(rounds):
        for index, batch in enumerate(batches):
            seconds = {}
            for name in ("lens", "dense") if index % 2 == 0 else ("dense", "lens"):
                start = time.perf_counter()
                runs[name](batch)
                seconds[name] = time.perf_counter() - start
                totals[name] += seconds[name]
            ratios.append(seconds["lens"] / seconds["dense"])
    return {
        "texts": len(texts),
        "rounds": rounds,
        "batches": len(ratios),
        "lens_s": round(totals["lens"], 3),
        "dense_s": round(totals["dense"], 3),
        "lens_over_dense": round(statistics.median(ratios), 3),
        "head_flop_share": round(head_flop_share(lens, batches), 3),
    }


def head_flop_share(lens, batches: list[list[str]]) -> float:
    """FLOPs of the K-way head over those of the encoder backbone (projections, MLP, attention), same
    batches."""
    config = lens[0].auto_model.config
    hidden, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    n_clusters = lens[1].n_clusters
    head = backbone = 0
    for batch in batches:
        lengths = [len(ids) for ids in lens[0].tokenizer(batch)["input_ids"]]
        padded = len(batch) * max(lengths)
        head += 2 * hidden * n_clusters * sum(lengths)
        backbone += layers * (
            padded * (8 * hidden * hidden + 4 * hidden * inner) + 4 * padded * max(lengths) * hidden
        )
    return head / backbone


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", choices=["chunked", "full"], help="internal: run one pooling measurement")
    parser.add_argument("--model", default=None)
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument(
        "--data", default="../shared/data", help="folder with sts/STSBenchmark for the overhead run"
    )
    parser.add_argument("--overhead-texts", type=int, default=2000)
    args = parser.parse_args()
    if args.pool:
        print(json.dumps(pool_once(args.pool)))
        return
    print(f"pooling [{BATCH}, {SEQ}, {HIDDEN}] x K={K}:")
    for mode in ("chunked", "full"):
        out = subprocess.run(
            [sys.executable, __file__, "--pool", mode], capture_output=True, text=True, check=True
        )
        print("  ", out.stdout.strip())
    from lens_embed import default_model_path

    model = args.model or str(default_model_path())
    print("encoding:", json.dumps(encode_throughput(model, args.texts)))
    if args.model is None:  # the dense twin exists for the embedded default (MiniLM) only
        overhead = head_overhead(model, sts_sentences(args.data, args.overhead_texts))
        print("lexicon head overhead (LENS / dense, same MiniLM):", json.dumps(overhead))


if __name__ == "__main__":
    main()
