"""CPU backends: texts per second of a LENS model (default: the embedded LENS-MiniLM) and of the dense
MiniLM on torch float32, ONNX Runtime and OpenVINO (float32 and int8), on 2,000 STSBenchmark sentences
(embedded as instructed queries, as the offline suite embeds them) and 1,000 SciFact documents (long
texts), with the float32 backends' largest embedding difference from torch.

Both models are copied into --workdir and exported there (lens-embed export's code, OpenVINO int8
calibrated on STSBenchmark *train* sentences). Each backend runs at its best batch size (timed on the
first texts). The texts are sorted by length and cut into groups; every variant of a model encodes each
group back to back, the order rotating, so drifts in the machine's speed cancel within a group; the
speed-up of a variant is the median of its per-group time ratios to torch float32, texts per second are
totals. Where the time goes (tokenisation, backbone, head) is measured for the fastest LENS variant.

Run with `make bench-cpu` (BENCH_CPU_ARGS="--sts-texts 200 --scifact-docs 100 --rounds 1" for a quick run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from lens_embed.base.defaults import EXPORT_FILES, minilm_path
from lens_embed.models.embedded import default_model_path
from lens_embed.models.export import export_model
from lens_embed.models.loading import load_lens_model
from lens_embed.models.model import LensSentenceTransformer, encode

STS_INSTRUCTION = "Retrieve semantically similar text"
VARIANTS: list[tuple[str, str, str | None]] = [
    ("torch fp32", "torch", None),
    ("onnx fp32", "onnx", None),
    ("onnx int8", "onnx", "int8"),
    ("openvino fp32", "openvino", None),
    ("openvino int8", "openvino", "int8"),
]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def corpora(data: Path, sts_texts: int, scifact_docs: int) -> dict[str, tuple[list[str], bool]]:
    """name -> (texts, embedded as queries)."""
    sts = [
        t
        for row in read_jsonl(data / "sts/STSBenchmark/test.jsonl")
        for t in (row["sentence1"], row["sentence2"])
    ]
    docs = [
        f"{row['title']} {row['text']}".strip() for row in read_jsonl(data / "retrieval/SciFact/corpus.jsonl")
    ]
    return {"STSBenchmark": (sts[:sts_texts], True), "SciFact": (docs[:scifact_docs], False)}


def calibration_texts(data: Path, n: int) -> list[str]:
    """Training sentences (never the benchmark's test texts) for OpenVINO's static int8."""
    return [row["query"] for row in read_jsonl(data / "training/stsb_train.jsonl")][:n]


def embedder(model, lens: bool, query: bool, batch_size: int) -> Callable[[Sequence[str]], np.ndarray]:
    if lens:
        instruction = STS_INSTRUCTION if query else None
        return lambda texts: encode(
            model, list(texts), query=query, instruction=instruction, batch_size=batch_size
        )
    return lambda texts: model.encode(list(texts), batch_size=batch_size)


def best_batch_size(model, lens: bool, query: bool, texts: list[str], sizes: Sequence[int]) -> int:
    """The batch size with the most texts per second on ``texts`` (after one warm-up pass)."""
    timings = {}
    for size in sizes:
        run = embedder(model, lens, query, size)
        run(texts[:size])
        start = time.perf_counter()
        run(texts)
        timings[size] = time.perf_counter() - start
    return min(timings, key=timings.get)


def time_pairs(runs: dict[str, Callable], texts: list[str], group: int, rounds: int) -> dict[str, dict]:
    """Every run on every group of ``texts`` (sorted by length), back to back in rotating order."""
    ordered = sorted(texts, key=len, reverse=True)
    groups = [ordered[i : i + group] for i in range(0, len(ordered), group)]
    names = list(runs)
    totals = {name: 0.0 for name in names}
    ratios: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        for index, batch in enumerate(groups):
            shift = (index + round_) % len(names)
            seconds = {}
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                runs[name](batch)
                seconds[name] = time.perf_counter() - start
                totals[name] += seconds[name]
            for name in names:
                ratios[name].append(seconds[names[0]] / seconds[name])
    return {
        name: {
            "texts_per_second": round(len(texts) * rounds / totals[name], 1),
            "speedup_median": round(statistics.median(ratios[name]), 2),
        }
        for name in names
    }


def where_time_goes(model, texts: list[str], query: bool, batch_size: int) -> dict[str, float]:
    """Seconds in tokenisation (preprocess), the backbone and the rest (the head, LENS' or the dense
    pooling) over ``texts`` in batches, as sentence-transformers runs them."""
    module, rest = model[0], list(model)[1:]
    prompt = model.prompts.get("query") if query else None
    instruction_prompt = (
        f"<instruct>{STS_INSTRUCTION}\n<query>"
        if query and LensSentenceTransformer.is_lens_model(model)
        else prompt
    )
    spent = {"tokenisation_s": 0.0, "backbone_s": 0.0, "head_s": 0.0}
    ordered = sorted(texts, key=len, reverse=True)
    with torch.no_grad():
        for start in range(0, len(ordered), batch_size):
            batch = ordered[start : start + batch_size]
            begin = time.perf_counter()
            kwargs = (
                {"task": "query" if query else "document"}
                if LensSentenceTransformer.is_lens_model(model)
                else {}
            )
            features = module.preprocess(batch, prompt=instruction_prompt, **kwargs)
            middle = time.perf_counter()
            features = module(features)
            after = time.perf_counter()
            for later in rest:
                features = later(features)
            end = time.perf_counter()
            spent["tokenisation_s"] += middle - begin
            spent["backbone_s"] += after - middle
            spent["head_s"] += end - after
    return {key: round(value, 3) for key, value in spent.items()}


def bench_model(
    label: str, folder: Path, data_sets: dict, args: argparse.Namespace, calibration: list[str]
) -> dict:
    for _, backend, quantize in VARIANTS[1:]:
        static = backend == "openvino" and quantize == "int8"
        export_model(folder, backend, quantize, calibration if static else None)
    models = {
        name: load_lens_model(
            folder, backend=backend, model_kwargs={"file_name": EXPORT_FILES[(backend, quantize)]}
        )
        if backend != "torch"
        else load_lens_model(folder)
        for name, backend, quantize in VARIANTS
    }
    lens = LensSentenceTransformer.is_lens_model(models["torch fp32"])
    result: dict = {"model": label, "lens": lens, "corpora": {}}
    for corpus, (texts, query) in data_sets.items():
        query = query and lens
        probe = texts[: args.probe_texts]
        sizes = {
            name: best_batch_size(model, lens, query, probe, args.batch_sizes)
            for name, model in models.items()
        }
        runs = {name: embedder(model, lens, query, sizes[name]) for name, model in models.items()}
        reference = runs["torch fp32"](texts[:64])
        timings = time_pairs(runs, texts, max(args.batch_sizes), args.rounds)
        for name in models:
            timings[name]["batch_size"] = sizes[name]
            if name.endswith("fp32") and name != "torch fp32":
                timings[name]["max_abs_diff_vs_torch"] = float(
                    np.abs(runs[name](texts[:64]) - reference).max()
                )
        result["corpora"][corpus] = timings
        if lens:
            fastest = max(timings, key=lambda name: timings[name]["texts_per_second"])
            result["corpora"][corpus]["time_split"] = {
                "variant": fastest,
                **where_time_goes(models[fastest], texts, query, sizes[fastest]),
            }
    if lens:
        result["clusters"] = LensSentenceTransformer.lexicon(models["torch fp32"]).n_clusters
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--model", default=None, help="LENS model folder (default: the embedded default)")
    parser.add_argument(
        "--workdir", default="results/bench-cpu", help="where the models are copied and exported"
    )
    parser.add_argument("--json", default=None, help="write the results here too")
    parser.add_argument("--sts-texts", type=int, default=2000)
    parser.add_argument("--scifact-docs", type=int, default=1000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--probe-texts", type=int, default=128, help="texts the batch sizes are tried on")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calibration-texts", type=int, default=300)
    args = parser.parse_args()
    data = Path(args.data)
    data_sets = corpora(data, args.sts_texts, args.scifact_docs)
    calibration = calibration_texts(data, args.calibration_texts)
    workdir = Path(args.workdir)
    results = {"threads": torch.get_num_threads(), "models": []}
    for label, source in (
        # assembled by this checkout into the work folder: the shared cache may hold another version's entry
        ("LENS", Path(args.model) if args.model else default_model_path(workdir / "cache")),
        ("dense MiniLM", minilm_path()),
    ):
        folder = workdir / label.replace(" ", "-")
        if not folder.exists():
            shutil.copytree(source, folder)
        results["models"].append(bench_model(label, folder, data_sets, args, calibration))
        print(json.dumps(results["models"][-1], indent=2), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
