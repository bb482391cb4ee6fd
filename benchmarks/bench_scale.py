"""The in-process engine's cost curves with the corpus size: build time, RAM and disk per document, p50/p99 ms
per query on one CPU core, and recall@10 against exact search, at N = 10k, 100k and 1M documents; then the
capacity of a Qdrant cluster for 10M and 100M documents, computed from the measured per-document figures.

Documents: embedding a million texts is out of reach on a CPU, so the corpus is built from real document
vectors: SciFact's documents embedded by the model (default: the embedded default, ``lens-embed default``;
``--source-docs`` of them, every judged one first), L2-normalised. Synthetic document ``i`` is made by a
generator seeded with ``(seed, i)``: it draws 2 or 3 distinct source documents (the first is its anchor) and
weights for them uniform in [0, 1), normalised to sum to 1; the weighted sum of their vectors is pruned back
to the anchor's number of active (non-zero) dimensions, keeping the largest weights, and L2-normalised. LENS
weights are non-negative, so the mix is active wherever a source is, and the pruning returns it to a real
document's count: the distribution of active-dimension counts is the source corpus's, and the weights keep a
real profile (a blend of 2-3 real ones). Any document is rebuilt from its number alone, so nothing of size N
is held in memory. Queries are the task's real test queries, embedded with their instruction.

Every configuration (:data:`CONFIGS`) is a collection filled through the package's own path
(``lens_embed.serving.collections.upload_vectors``): build time is the upload with the engine's optimisation
(graph, quantisation, sparse index). Disk per document is the allocated blocks of the collection's segments
less an empty collection's; RAM per document is the part of them the engine holds in memory by its
configuration (everything but the payload storage, which the engine keeps on disk by default, and the full
vectors of an ``on_disk`` collection): the placement the engine is told, read from the files, not the
process's resident size. Search: one query per request, the process pinned to one CPU core; recall@10 counts
a hit when its exact score reaches the exact 10th score. A configuration whose next size would take longer
than ``--time-limit`` (extrapolated from the sizes measured with their fitted growth exponent) is stopped,
saying so; a run whose largest collection would not fit in the memory available is refused before it starts,
saying what it needs.

    make bench-scale                      # N = 10k, 100k, 1M
    make bench-scale SCALE_SIZES="2000 5000" SCALE_ARGS="--max-queries 100"   # a quick check
    # search settings swept on each built collection (one build): oversampling x graph breadth, warm
    make bench-scale SCALE_CONFIGS=turbo2 SCALE_ARGS="--oversampling 4 8 16 --hnsw-ef 0 256 --warm-passes 1"
    # runs split by the memory check, reported as one (growth exponents and capacity over all their rows):
    python benchmarks/bench_scale.py --combine A/scale.json B/scale.json --output OUT
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_engine beside this script

from bench_engine import add_task_arguments, load_task  # noqa: E402

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
DEFAULT_PRUNING = 256
DEFAULT_OVERSAMPLING = 4.0
MEMORY_OVERHEAD = 1.5
"""An allowance per byte of a collection's in-RAM vectors while it is built and searched: the optimiser
writes an indexed copy of a segment beside the appendable one, and the graph and id tracker come on top."""
DISK_OVERHEAD = 4.5
"""An allowance per byte of a collection's stored vectors on disk while it is built: measured at 1M documents
of TurboQuant 2-bit (15.8 GiB stored), the write-ahead log and the segments held about 34 GiB when the
optimiser asked for 31.9 GiB more, a peak of 4.2 times the stored bytes."""
CAPACITY_DOCS = (10_000_000, 100_000_000)
CAPACITY_K = (4000, 8000)
NODE_HEADROOM = 0.75
"""Part of a node's RAM a capacity plan fills with collections: the rest is the OS, the page cache that serves
on-disk vectors for rescoring, and the optimiser."""


QUERY_SUFFIXES = {"binary": "", "scalar8bits": "-q8", "scalar4bits": "-q4"}
"""How a configuration's name says binary quantisation's query encoding (``binary2-q8``: 2 bits a dimension,
the query at 8 bits)."""


def binary_configs(oversampling: float) -> dict[str, Any]:
    """Binary quantisation at each of its bits a dimension and query encodings, rescored: ``binary`` (1 bit,
    the query binary too), ``binary-q8`` (1 bit, the query at 8 bits), ``binary1.5``, ``binary2-q4``..."""
    from lens_embed.base.quantization import QuantizationSettings
    from lens_embed.base.vocabulary import BINARY_BITS, BINARY_QUERIES

    table = {}
    for bits in BINARY_BITS:
        for query in BINARY_QUERIES:
            name = f"binary{'' if bits == '1' else bits}{QUERY_SUFFIXES[query]}"
            encoding = "" if (bits, query) == ("1", "binary") else f" {bits}-bit, query {query}"
            table[name] = (
                f"binary{encoding} + rescore (x{oversampling:g}), full vectors on disk",
                {
                    "vectors": "dense",
                    "quantization": QuantizationSettings("binary", binary_bits=bits, binary_query=query),
                    "on_disk": True,
                },
                {"rescore": True, "oversampling": oversampling},
            )
    return table


def turbo_configs(oversampling: float) -> dict[str, Any]:
    """TurboQuant at each of its bits a dimension, rescored: ``turbo1``, ``turbo1.5``, ``turbo2``, ``turbo4``
    (about 1/8 of float32)."""
    from lens_embed.base.quantization import QuantizationSettings
    from lens_embed.base.vocabulary import TURBO_BITS

    return {
        f"turbo{bits}": (
            f"turbo {bits}-bit + rescore (x{oversampling:g}), full vectors on disk",
            {
                "vectors": "dense",
                "quantization": QuantizationSettings("turbo", turbo_bits=bits),
                "on_disk": True,
            },
            {"rescore": True, "oversampling": oversampling},
        )
        for bits in TURBO_BITS
    }


def configs(pruning: int = DEFAULT_PRUNING, oversampling: float = DEFAULT_OVERSAMPLING) -> dict[str, Any]:
    """``{name: (label, collection options, search options)}`` of the measured configurations."""
    from lens_embed.base.quantization import QuantizationSettings

    rescored = {"rescore": True, "oversampling": oversampling}
    return {
        "dense-exact": ("dense float32, exact", {"vectors": "dense", "hnsw_m": 0}, {"exact": True}),
        "f16-hnsw": ("dense float16, HNSW", {"vectors": "dense", "dense_dtype": "float16"}, {}),
        "int8": (
            f"int8 + rescore (x{oversampling:g}), full vectors on disk",
            {"vectors": "dense", "quantization": QuantizationSettings("int8"), "on_disk": True},
            rescored,
        ),
        **binary_configs(oversampling),
        "product": (
            f"product x16 + rescore (x{oversampling:g}), full vectors on disk",
            {"vectors": "dense", "quantization": QuantizationSettings("product"), "on_disk": True},
            rescored,
        ),
        **turbo_configs(oversampling),
        "sparse": ("sparse, all active dimensions", {"vectors": "sparse"}, {}),
        "sparse-pruned": (
            f"sparse, top {pruning} per document",
            {"vectors": "sparse", "max_active_dims": pruning},
            {},
        ),
    }


CONFIGS = tuple(configs())
DEFAULT_CONFIGS = ("dense-exact", "f16-hnsw", "int8", "binary", "sparse", "sparse-pruned")
"""The issue's list; ``product``, the binary encodings beyond one bit (:func:`binary_configs`) and TurboQuant
(:func:`turbo_configs`) are measured when asked for (product's codebooks take long to train at K = 4000)."""


class SyntheticCorpus:
    """N documents mixed from real ones (see the module's docstring), rebuilt on demand from their numbers:
    ``corpus[rows]`` is a float32 array, as ``upload_vectors`` reads an embedding matrix."""

    def __init__(self, source: np.ndarray, n: int, seed: int = 0) -> None:
        from lens_embed.serving.retrieval import normalized

        if len(source) < 3:
            raise ValueError("the synthetic corpus mixes 2-3 distinct source documents: give at least 3")
        self.source = normalized(np.asarray(source, dtype=np.float32))
        self.active = np.count_nonzero(self.source, axis=1)
        self.n, self.seed = n, seed
        self.shape = (n, self.source.shape[1])
        self.ndim = 2

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, rows: Sequence[int]) -> np.ndarray:
        picks = np.zeros((len(rows), 3), dtype=np.int64)
        weights = np.zeros((len(rows), 3), dtype=np.float32)
        for i, row in enumerate(rows):
            if not 0 <= row < self.n:
                raise IndexError(f"document {row} of {self.n}")
            rng = np.random.default_rng([self.seed, int(row)])
            mixed = int(rng.integers(2, 4))
            picks[i, :mixed] = rng.choice(len(self.source), size=mixed, replace=False)
            weights[i, :mixed] = rng.random(mixed)
        weights /= weights.sum(axis=1, keepdims=True)
        mix = np.einsum("bk,bkd->bd", weights, self.source[picks])
        keep = self.active[picks[:, 0]]
        # the anchor's count of the largest weights (the mix is active wherever the anchor is: threshold > 0)
        threshold = -np.sort(-mix, axis=1)[np.arange(len(rows)), keep - 1]
        mix[mix < threshold[:, None]] = 0.0
        return mix / np.linalg.norm(mix, axis=1, keepdims=True)


def batches(n: int, size: int = 2048):
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def exact_top(corpus: SyntheticCorpus, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Every query's exact k best documents and their scores (cosine), streamed over the corpus."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    for rows in batches(len(corpus)):
        scores = queries @ corpus[list(rows)].T
        best_scores = np.concatenate([best_scores, scores], axis=1)
        best_rows = np.concatenate([best_rows, np.broadcast_to(np.asarray(rows), scores.shape)], axis=1)
        order = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(best_scores, order, axis=1)
        best_rows = np.take_along_axis(best_rows, order, axis=1)
    return best_rows, best_scores


def resident_bytes(spec: Any, active: float) -> float:
    """The in-RAM bytes of one document of a collection of ``spec`` whose documents have ``active`` active
    dimensions on average (the vectors the engine holds in memory: the memory check's estimate, before any
    is built; a sparse entry is 8 bytes in the storage and 8 in the index)."""
    from lens_embed.serving.engine import quantized_bytes

    full = spec.dim * (2 if spec.dense_dtype == "float16" else 4) if spec.dense else 0
    sparse = 16 * min(spec.max_active_dims or spec.dim, active) if spec.sparse else 0
    return (0 if spec.on_disk else full + sparse) + quantized_bytes(spec.dim, spec.quantization)


def stored_bytes(spec: Any, active: float) -> float:
    """The bytes of one document a collection of ``spec`` stores on disk (full vectors and their quantised
    copy): the disk check's estimate, as :func:`resident_bytes` is the memory check's."""
    from lens_embed.serving.engine import quantized_bytes

    full = spec.dim * (2 if spec.dense_dtype == "float16" else 4) if spec.dense else 0
    sparse = 16 * min(spec.max_active_dims or spec.dim, active) if spec.sparse else 0
    return full + sparse + quantized_bytes(spec.dim, spec.quantization)


@dataclass(frozen=True)
class MemoryNeed:
    size: int
    config: str
    bytes: float


def memory_plan(
    specs: dict[str, Any],
    sizes: Sequence[int],
    active: float,
    per_document: Any = resident_bytes,
    overhead: float = MEMORY_OVERHEAD,
) -> list[MemoryNeed]:
    """What each configuration needs at the largest size: N x ``per_document`` bytes x ``overhead`` (one
    collection lives at a time; ``active``: the documents' mean active-dimension count). RAM by default;
    disk with :func:`stored_bytes` and :data:`DISK_OVERHEAD`."""
    largest = max(sizes)
    return [
        MemoryNeed(largest, name, largest * per_document(spec, active) * overhead)
        for name, spec in specs.items()
    ]


def shortfall(needs: Sequence[MemoryNeed], available: int, room: str, overhead: float) -> str | None:
    """The message refusing a run whose collections would not fit in ``available`` bytes of ``room``."""
    unfit = [need for need in needs if need.bytes > available]
    if not unfit:
        return None
    return (
        f"this run needs more {room} than the {available / 2**30:.1f} GiB available: "
        + "; ".join(
            f"{need.config} at N = {need.size:,} needs about {need.bytes / 2**30:.1f} GiB" for need in unfit
        )
        + f" (N x bytes per document x {overhead}); leave those out (SCALE_CONFIGS, SCALE_SIZES)"
    )


def check_memory(needs: Sequence[MemoryNeed], available: int) -> None:
    """Refuse, before anything is built, a run whose collections would not fit in ``available`` bytes of
    RAM."""
    message = shortfall(needs, available, "memory", MEMORY_OVERHEAD)
    if message:
        raise MemoryError(message)


def check_disk(needs: Sequence[MemoryNeed], available: int) -> None:
    """Refuse, before anything is built, a run whose collections would not fit on the work folder's disk (the
    engine stops a collection's optimisation when it would, after its upload)."""
    message = shortfall(needs, available, "disk", DISK_OVERHEAD)
    if message:
        raise OSError(message)


def available_memory() -> int:
    """MemAvailable of /proc/meminfo, in bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise OSError("no MemAvailable in /proc/meminfo")


def folder_bytes(folder: Path, *, on_disk: bool = False, resident: bool = False) -> int:
    """Allocated bytes of a collection's segments; ``resident``: only the files the engine holds in RAM
    (not the payload storage, nor an ``on_disk`` collection's full vectors)."""
    total = 0
    for path in (folder / "segments").rglob("*"):
        if not path.is_file():
            continue
        parts = path.relative_to(folder / "segments").parts[1:]
        if resident and (
            parts[0] == "payload_storage"
            or (on_disk and parts[0].startswith("vector_storage-") and not parts[-1].startswith("quantized"))
        ):
            continue
        total += os.stat(path).st_blocks * 512
    return total


def growth_exponent(sizes: Sequence[float], values: Sequence[float]) -> float | None:
    """The slope of log(value) against log(N) (least squares): 1 is linear growth, 0 constant."""
    points = [(math.log(n), math.log(v)) for n, v in zip(sizes, values, strict=True) if v > 0]
    if len(points) < 2 or len({x for x, _ in points}) < 2:
        return None
    x, y = np.array(points).T
    return float(np.polyfit(x, y, 1)[0])


def extrapolated_seconds(sizes: Sequence[int], seconds: Sequence[float], next_size: int) -> float:
    """The time of ``next_size`` from the sizes measured: their fitted growth (linear from one size)."""
    exponent = growth_exponent(sizes, seconds)
    return seconds[-1] * (next_size / sizes[-1]) ** max(exponent if exponent is not None else 1.0, 1.0)


def search_settings(
    config: tuple[str, dict[str, Any], dict[str, Any]],
    oversampling: Sequence[float] = (),
    hnsw_ef: Sequence[int] = (),
) -> list[dict[str, Any]]:
    """The search options measured on one built collection of ``config``: its own first, then every further
    pair of an oversampling (rescored configurations) and a graph breadth (``hnsw_ef``, HNSW configurations;
    0: the engine's own), so a sweep costs one build."""
    _, options, search = config
    factors = list(oversampling) if "oversampling" in search else []
    graph = list(hnsw_ef) if not search.get("exact") and options.get("vectors") == "dense" else []
    settings = [dict(search)]
    for factor in factors or [None]:
        for ef in graph or [0]:
            setting = {**search, **({"oversampling": factor} if factor is not None else {})}
            setting.update({"hnsw_ef": ef} if ef else {})
            if setting not in settings:
                settings.append(setting)
    return settings


def timed_queries(
    backend: Any, requests: Sequence[Any], search: dict[str, Any], warm_passes: int
) -> tuple[list[float], list[list[int]]]:
    """ms per query (one query per request) and the ids found, after ``warm_passes`` untimed passes over
    every query (a warm page cache for on-disk vectors, as a serving node has)."""
    for _ in range(warm_passes):
        for request in requests:
            backend.query([request], 10, **search)
    times, found = [], []
    for request in requests:
        started = time.perf_counter()
        found.append([int(doc) for doc, _ in backend.query([request], 10, **search)[0]])
        times.append(1000 * (time.perf_counter() - started))
    return times, found


def recall_at_10(
    corpus: SyntheticCorpus, queries: np.ndarray, truth: tuple[np.ndarray, np.ndarray], found: list[list[int]]
) -> float:
    """Mean share of each query's 10 results whose exact score reaches the exact 10th score."""
    _, scores = truth
    hits = [
        float(np.sum(queries[q] @ corpus[row].T >= scores[q, -1] - 1e-6)) / 10 if row else 0.0
        for q, row in enumerate(found)
    ]
    return round(float(np.mean(hits)), 4)


def measure_one(
    name: str,
    config: tuple[str, dict[str, Any], dict[str, Any]],
    corpus: SyntheticCorpus,
    queries: np.ndarray,
    truth: tuple[np.ndarray, np.ndarray],
    workdir: Path,
    model_name: str,
    clusters: int | None,
    settings: Sequence[dict[str, Any]] | None = None,
    warm_passes: int = 0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One configuration at one N: its row (the first search setting) and one row per search setting
    (:func:`search_settings`, all measured on the same collection)."""
    from lens_embed.serving.collections import CollectionSpec, engine_queries, open_collection, upload_vectors
    from lens_embed.serving.engine import EdgeBackend

    label, options, search = config
    settings = list(settings or [search])
    spec = CollectionSpec(
        model_name=model_name, model_key="benchmark", dim=corpus.shape[1], clusters=clusters, **options
    )
    with EdgeBackend(workdir, f"empty-{name}") as empty:
        open_collection(empty, spec)
    fixed = folder_bytes(empty.folder), folder_bytes(empty.folder, on_disk=spec.on_disk, resident=True)
    ids = [str(i) for i in range(len(corpus))]
    with EdgeBackend(workdir, f"n{len(corpus)}-{name}") as backend:
        open_collection(backend, spec)
        started = time.perf_counter()
        upload_vectors(backend, spec, ids, corpus, batch_size=256, show_progress=False)
        built = time.perf_counter() - started
        backend.reload()  # flushed: the files hold everything, and the search reads them
        disk = (folder_bytes(backend.folder) - fixed[0]) / len(corpus)
        ram = (folder_bytes(backend.folder, on_disk=spec.on_disk, resident=True) - fixed[1]) / len(corpus)
        requests = engine_queries(spec, queries)
        backend.query(requests[:1], 10, **search)  # opens the collection: not a query's time
        cpus = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(cpus)})  # one core for the engine's search threads
        try:
            measured = [
                (setting, *timed_queries(backend, requests, setting, warm_passes)) for setting in settings
            ]
        finally:
            os.sched_setaffinity(0, cpus)
    backend.drop()
    sweep = [
        {
            "config": name,
            "n": len(corpus),
            "oversampling": setting.get("oversampling"),
            "hnsw_ef": setting.get("hnsw_ef", 0),
            "warm_passes": warm_passes,
            "p50_ms": round(float(np.percentile(times, 50)), 3),
            "p99_ms": round(float(np.percentile(times, 99)), 3),
            "recall_at_10": recall_at_10(corpus, queries, truth, found),
        }
        for setting, times, found in measured
    ]
    row = {
        "config": name,
        "label": label,
        "n": len(corpus),
        "build_s": round(built, 2),
        "ram_bytes_per_doc": round(ram, 1),
        "disk_bytes_per_doc": round(disk, 1),
        **{figure: sweep[0][figure] for figure in ("p50_ms", "p99_ms", "recall_at_10")},
    }
    return row, sweep


FIGURES = ("build_s", "ram_bytes_per_doc", "disk_bytes_per_doc", "p50_ms", "p99_ms", "recall_at_10")


def exponents(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """``{config: {figure: growth exponent with N}}`` (per-document figures: 0 when they hold still)."""
    found: dict[str, dict[str, float | None]] = {}
    for name in dict.fromkeys(row["config"] for row in rows):
        mine = [row for row in rows if row["config"] == name]
        found[name] = {
            figure: growth_exponent([r["n"] for r in mine], [r[figure] for r in mine]) for figure in FIGURES
        }
    return found


@dataclass(frozen=True)
class CapacityRow:
    config: str
    docs: int
    k: int
    ram_bytes: float
    disk_bytes: float
    nodes: int
    measured: bool


def capacity(
    per_doc: dict[str, tuple[float, float]],
    measured_k: int,
    node_ram: float,
    docs: Sequence[int] = CAPACITY_DOCS,
    ks: Sequence[int] = CAPACITY_K,
    headroom: float = NODE_HEADROOM,
) -> list[CapacityRow]:
    """RAM, disk and nodes (one shard each) of every configuration for ``docs`` documents at each K.

    ``per_doc`` is ``{config: (RAM bytes, disk bytes)}`` per document, measured at K = ``measured_k``; other
    K scale them in proportion (a LENS vector's dimensions, its quantised copy and its active dimensions all
    grow with K); the totals are N times the per-document figures. Nodes: the RAM over ``node_ram x
    headroom``, rounded up. ``measured`` marks the rows at the measured K (per-document figures measured, the
    totals still extrapolated in N).
    """
    rows = []
    for config, (ram, disk) in per_doc.items():
        for k in ks:
            scale = k / measured_k
            for n in docs:
                total_ram = ram * scale * n
                rows.append(
                    CapacityRow(
                        config=config,
                        docs=n,
                        k=k,
                        ram_bytes=total_ram,
                        disk_bytes=disk * scale * n,
                        nodes=max(1, math.ceil(total_ram / (node_ram * headroom))),
                        measured=k == measured_k,
                    )
                )
    return rows


def capacity_markdown(rows: Sequence[CapacityRow], node_ram: float, basis: str) -> str:
    lines = [
        f"Per-document figures: {basis}. Totals = N x per-document figure (extrapolated in N); K other than "
        "the measured one scales them in proportion (extrapolated in K). Nodes (one shard each, no replicas) "
        f"= RAM / ({node_ram / 2**30:g} GiB x {NODE_HEADROOM}), rounded up.",
        "",
        "| configuration | documents | K | per-document figures | RAM (GiB) | disk (GiB) | shards = nodes |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.config} | {r.docs / 1e6:g}M | {r.k} | {'measured' if r.measured else 'extrapolated'} | "
            f"{r.ram_bytes / 2**30:,.1f} | {r.disk_bytes / 2**30:,.1f} | {r.nodes} |"
        )
    return "\n".join(lines)


def results_markdown(rows: Sequence[dict[str, Any]], growth: dict[str, dict[str, float | None]]) -> str:
    lines = [
        "| configuration | N | build (s) | RAM B/doc | disk B/doc | p50 ms | p99 ms | recall@10 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['n']:,} | {r['build_s']} | {r['ram_bytes_per_doc']} | "
            f"{r['disk_bytes_per_doc']} | {r['p50_ms']} | {r['p99_ms']} | {r['recall_at_10']} |"
        )
    lines += ["", "Growth exponent with N (value ~ N^b; per-document figures near 0 hold still):", ""]
    lines += ["| configuration | " + " | ".join(FIGURES) + " |", "| --- |" + " ---: |" * len(FIGURES)]
    for name, figures in growth.items():
        cells = ["-" if figures[f] is None else f"{figures[f]:.2f}" for f in FIGURES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_markdown(sweeps: Sequence[dict[str, Any]]) -> str:
    lines = [
        "Search settings, each measured on the same collection (hnsw_ef 0: the engine's own):",
        "",
        "| configuration | N | oversampling | hnsw_ef | warm passes | p50 ms | p99 ms | recall@10 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in sweeps:
        factor = "-" if r["oversampling"] is None else f"{r['oversampling']:g}"
        lines.append(
            f"| {r['config']} | {r['n']:,} | {factor} | {r['hnsw_ef']} | {r['warm_passes']} | "
            f"{r['p50_ms']} | {r['p99_ms']} | {r['recall_at_10']} |"
        )
    return "\n".join(lines)


def run(
    source: np.ndarray,
    queries: np.ndarray,
    sizes: Sequence[int],
    names: Sequence[str],
    workdir: Path,
    *,
    model_name: str,
    clusters: int | None,
    pruning: int = DEFAULT_PRUNING,
    oversampling: Sequence[float] = (DEFAULT_OVERSAMPLING,),
    hnsw_ef: Sequence[int] = (),
    warm_passes: int = 0,
    time_limit: float = 1200.0,
    available: int | None = None,
    free_disk: int | None = None,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]]]:
    """Every configuration at every size (smallest first); returns the rows, the configurations stopped and
    the search rows (every setting of :func:`search_settings`; the rows hold the first: ``oversampling[0]``
    and the engine's graph breadth)."""
    from lens_embed.serving.collections import CollectionSpec
    from lens_embed.serving.retrieval import normalized

    table = configs(pruning, oversampling[0])
    unknown = sorted(set(names) - set(table))
    if unknown:
        raise ValueError(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(table)}")
    specs = {
        name: CollectionSpec(
            model_name=model_name, model_key="benchmark", dim=source.shape[1], **table[name][1]
        )
        for name in names
    }
    active = float(np.count_nonzero(source, axis=1).mean())  # the synthetic documents' mean, by construction
    check_memory(memory_plan(specs, sizes, active), available_memory() if available is None else available)
    check_disk(
        memory_plan(specs, sizes, active, stored_bytes, DISK_OVERHEAD),
        shutil.disk_usage(workdir).free if free_disk is None else free_disk,
    )
    queries = normalized(np.asarray(queries, dtype=np.float32))
    rows: list[dict[str, Any]] = []
    sweeps: list[dict[str, Any]] = []
    stopped: list[str] = []
    active = list(names)
    for n in sorted(sizes):
        corpus = SyntheticCorpus(source, n, seed)
        truth = exact_top(corpus, queries)
        for name in list(active):
            mine = [r for r in rows if r["config"] == name]
            if mine:
                spent = [r["build_s"] + r["p50_ms"] * len(queries) / 1000 for r in mine]
                expected = extrapolated_seconds([r["n"] for r in mine], spent, n)
                if expected > time_limit:
                    stopped.append(
                        f"{name}: stopped before N = {n:,}: extrapolated {expected / 60:.0f} min "
                        f"> {time_limit / 60:.0f} min"
                    )
                    print(stopped[-1], flush=True)
                    active.remove(name)
                    continue
            settings = search_settings(table[name], oversampling, hnsw_ef)
            row, sweep = measure_one(
                name,
                table[name],
                corpus,
                queries,
                truth,
                workdir,
                model_name,
                clusters,
                settings,
                warm_passes,
            )
            rows.append(row)
            sweeps += sweep
            print(json.dumps(row), flush=True)
            for setting in sweep[1:]:
                print(json.dumps(setting), flush=True)
    return rows, stopped, sweeps


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_task_arguments(parser, "results/bench-scale")  # the shards: the source documents' embeddings
    parser.add_argument(
        "--source-docs",
        type=int,
        default=None,
        help="real documents mixed (every judged one first; default all)",
    )
    parser.add_argument(
        "--max-queries", type=int, default=None, help="the first N test queries (default all)"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), choices=CONFIGS)
    parser.add_argument(
        "--pruning", type=int, default=DEFAULT_PRUNING, help="sparse-pruned: active dims kept"
    )
    parser.add_argument(
        "--oversampling",
        type=float,
        nargs="+",
        default=[DEFAULT_OVERSAMPLING],
        help="rescored configurations: the first for their rows, every one in the search table",
    )
    parser.add_argument(
        "--hnsw-ef",
        type=int,
        nargs="+",
        default=[],
        help="graph breadths searched on each HNSW collection too (search table; 0: the engine's own)",
    )
    parser.add_argument(
        "--warm-passes", type=int, default=0, help="untimed passes over the queries before each timed one"
    )
    parser.add_argument("--time-limit", type=float, default=1200.0, help="seconds a configuration may take")
    parser.add_argument(
        "--node-ram-gib", type=float, default=64.0, help="RAM of a cluster node (capacity table)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--combine",
        nargs="+",
        type=Path,
        metavar="SCALE_JSON",
        help="report earlier runs' scale.json files together (no measuring): runs split by the memory check",
    )
    parser.add_argument("--k", type=int, default=None, help="with --combine: K, where the files do not say")
    args = parser.parse_args(argv)
    if args.combine:
        headings, rows, stopped, k, sweeps = combined(args.combine, args.k)
        return write_report(Path(args.output), headings, rows, stopped, k, args.node_ram_gib, sweeps)
    from lens_embed import default_model_path
    from lens_embed.models.loading import load_lens_model
    from lens_embed.models.model import LensSentenceTransformer, encode
    from lens_embed.serving.corpus import encode_corpus
    from lens_embed.serving.retrieval import corpus_key

    documents, queries, _ = load_task(Path(args.data), args.task, args.source_docs)
    model_path = args.model or str(default_model_path())
    model = load_lens_model(model_path)
    clusters = (
        LensSentenceTransformer.lexicon(model).n_clusters
        if LensSentenceTransformer.is_lens_model(model)
        else None
    )
    texts = list(documents.values())
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    shards = Path(args.shards) if args.shards else output / "shards" / corpus_key(model, texts)
    source = np.load(encode_corpus(model, texts, shards))
    query_texts = list(queries.values())[: args.max_queries]
    query_vectors = encode(model, query_texts, query=True, instruction=args.instruction)
    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=output) as workdir:
        rows, stopped, sweeps = run(
            source,
            query_vectors,
            args.sizes,
            args.configs,
            Path(workdir),
            model_name=model_path,
            clusters=clusters,
            pruning=args.pruning,
            oversampling=args.oversampling,
            hnsw_ef=args.hnsw_ef,
            warm_passes=args.warm_passes,
            time_limit=args.time_limit,
            seed=args.seed,
        )
    heading = (
        f"{args.task}: {len(texts)} real documents mixed into N synthetic ones, {len(query_texts)} real "
        f"queries, K = {source.shape[1]}; in-process engine (qdrant-edge-py), one core for search"
    )
    return write_report(output, [heading], rows, stopped, source.shape[1], args.node_ram_gib, sweeps)


def write_report(
    output: Path,
    headings: Sequence[str],
    rows: Sequence[dict[str, Any]],
    stopped: Sequence[str],
    k: int,
    node_ram_gib: float,
    sweeps: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The rows, their growth exponents, the search settings measured on the same collections (when more than
    one was) and the capacity plan from each configuration's largest N, printed and written to ``scale.md``
    and ``scale.json`` (which :func:`combined` reads back)."""
    growth = exponents(rows)
    largest = {row["config"]: row for row in rows}  # each configuration's largest N measured
    node_ram = node_ram_gib * 2**30
    plan = capacity(
        {
            largest[c]["label"]: (largest[c]["ram_bytes_per_doc"], largest[c]["disk_bytes_per_doc"])
            for c in largest
        },
        k,
        node_ram,
    )
    basis = (
        f"measured at K = {k}, each configuration's largest N ("
        + ", ".join(f"{c} {largest[c]['n']:,}" for c in largest)
        + ")"
    )
    searched = [sweep_markdown(sweeps)] if len(sweeps) > len(rows) else []
    report = "\n\n".join(
        [
            *headings,
            results_markdown(rows, growth),
            *searched,
            *stopped,
            capacity_markdown(plan, node_ram, basis),
        ]
    )
    print(report)
    output.mkdir(parents=True, exist_ok=True)
    (output / "scale.md").write_text(report + "\n", encoding="utf-8")
    result = {
        "headings": list(headings),
        "k": k,
        "rows": list(rows),
        "growth": growth,
        "stopped": list(stopped),
        "capacity": [vars(r) for r in plan],
        "search": list(sweeps),
    }
    (output / "scale.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def combined(
    paths: Sequence[Path], k: int | None
) -> tuple[list[str], list[dict[str, Any]], list[str], int, list[dict[str, Any]]]:
    """The headings, rows, stopped configurations, K and search rows of several runs' ``scale.json`` (a run
    split because the memory check refuses some configurations at the largest N). A configuration measured
    by two runs, or runs at different K, are refused: their rows would not make one curve."""
    headings: list[str] = []
    rows: list[dict[str, Any]] = []
    sweeps: list[dict[str, Any]] = []
    stopped: list[str] = []
    ks = {k} if k is not None else set()
    for path in paths:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
        twice = {row["config"] for row in rows} & {row["config"] for row in result["rows"]}
        if twice:
            raise ValueError(f"{path}: {', '.join(sorted(twice))} measured by an earlier file too")
        headings += result.get("headings", [])
        rows += result["rows"]
        sweeps += result.get("search", [])
        stopped += result["stopped"]
        ks |= {result["k"]} if "k" in result else set()
    if len(ks) != 1:
        raise ValueError(
            f"the runs' K is {' and '.join(map(str, sorted(ks)))}: combine runs of one K"
            if ks
            else "no scale.json says its K (written before the field existed): pass --k"
        )
    return list(dict.fromkeys(headings)), rows, stopped, ks.pop(), sweeps  # one heading per distinct setup


if __name__ == "__main__":
    main()
