"""Benchmarks: pooling cost (chunked vs full logits) and encoding throughput of a LENS model.

Run with `make bench` (MODEL=path to benchmark another model than the embedded default).
Peak memory of the pooling is measured as the process' peak RSS growth in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from lens_embed.pooling import masked_max_logits

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", choices=["chunked", "full"], help="internal: run one pooling measurement")
    parser.add_argument("--model", default=None)
    parser.add_argument("--texts", type=int, default=1024)
    args = parser.parse_args()
    if args.pool:
        print(json.dumps(pool_once(args.pool)))
        return
    print(f"pooling [{BATCH}, {SEQ}, {HIDDEN}] x K={K}:")
    for mode in ("chunked", "full"):
        out = subprocess.run([sys.executable, __file__, "--pool", mode], capture_output=True, text=True, check=True)
        print("  ", out.stdout.strip())
    from lens_embed import default_model_path

    print("encoding:", json.dumps(encode_throughput(args.model or str(default_model_path()), args.texts)))


if __name__ == "__main__":
    main()
