"""The scale benchmark's script on tiny inputs: the synthetic corpus keeps its sources' active counts, every
configuration is measured (exact ones exact), a run that would not fit in memory is refused before anything is
built, a configuration too slow for its next size is stopped, and the capacity arithmetic.

Speed is never asserted (that is `make bench-scale`'s job); this keeps the script from breaking unnoticed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lens_embed.base.quantization import QuantizationSettings

BENCHMARK = "bench_scale"  # the script under test, the `bench` fixture


def _source(n: int = 40, dim: int = 32) -> np.ndarray:
    """Non-negative vectors with 6 to 25 active dimensions, as LENS documents are."""
    rng = np.random.default_rng(1)
    source = np.zeros((n, dim), dtype=np.float32)
    for row in range(n):
        active = rng.choice(dim, size=int(rng.integers(6, 26)), replace=False)
        source[row, active] = rng.random(len(active)) + 0.01
    return source


def test_a_synthetic_document_keeps_its_anchors_active_count_and_is_rebuilt_from_its_number(bench):
    source = _source()
    corpus = bench.SyntheticCorpus(source, 500, seed=3)
    documents = corpus[list(range(500))]
    anchors = [
        int(np.random.default_rng([3, row]).choice(40, size=3, replace=False)[0]) for row in range(500)
    ]
    mixed = [int(np.random.default_rng([3, row]).integers(2, 4)) for row in range(500)]
    assert {2, 3} <= set(mixed)  # draws are made in the docstring's order: the count, then the sources
    anchors = [
        int(rng.choice(40, size=int(rng.integers(2, 4)), replace=False)[0])
        for rng in (np.random.default_rng([3, row]) for row in range(500))
    ]
    np.testing.assert_array_equal(
        np.count_nonzero(documents, axis=1), np.count_nonzero(source[anchors], axis=1)
    )
    np.testing.assert_allclose(np.linalg.norm(documents, axis=1), 1.0, atol=1e-6)
    assert (documents >= 0).all()
    np.testing.assert_array_equal(corpus[[7, 499]], documents[[7, 499]])
    assert not np.allclose(documents[0], bench.SyntheticCorpus(source, 500, seed=4)[[0]][0])


@pytest.fixture(scope="module")
def report(bench, retrieval_task, tiny_lens: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("bench-scale")
    task = retrieval_task(root, "Tiny", 30, 11, {i: 2 * i for i in range(11)})
    output = root / "out"
    argv = [*task, "--model", str(tiny_lens), "--output", str(output)]
    result = bench.main(
        [*argv, "--sizes", "150", "300", "--configs", *bench.CONFIGS, "--pruning", "4"]
        + ["--oversampling", "4", "8", "--hnsw-ef", "0", "64", "--warm-passes", "1"]
    )
    return result, output


def test_every_configuration_is_measured_at_every_size(bench, report):
    result, output = report
    rows = result["rows"]
    assert [(row["n"], row["config"]) for row in rows] == [(n, c) for n in (150, 300) for c in bench.CONFIGS]
    assert json.loads((output / "scale.json").read_text()) == json.loads(json.dumps(result))
    assert all(row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"] and row["build_s"] > 0 for row in rows)
    assert not list(output.glob("bench-scale-*"))  # the collections are gone
    assert set(result["growth"]) == set(bench.CONFIGS) and result["stopped"] == []
    assert "| configuration | documents | K |" in (output / "scale.md").read_text()


def test_exact_configurations_are_exact_and_quantised_ones_keep_their_full_vectors_out_of_ram(bench, report):
    rows = {(row["n"], row["config"]): row for row in report[0]["rows"]}
    for n in (150, 300):
        assert rows[n, "dense-exact"]["recall_at_10"] == 1.0 and rows[n, "sparse"]["recall_at_10"] == 1.0
        for quantised in (
            "int8",
            "product",
            *(name for name in bench.CONFIGS if name.startswith(("binary", "turbo"))),
        ):
            # the full vectors stay on disk (at K = 16 the graph's links outweigh any vector, so RAM is
            # compared with the collection's own disk, not with dense-exact's RAM)
            row = rows[n, quantised]
            assert row["ram_bytes_per_doc"] < row["disk_bytes_per_doc"]


def test_a_sweep_crosses_oversampling_with_graph_breadth_where_the_configuration_has_them(bench):
    table = bench.configs(oversampling=4.0)
    settings = bench.search_settings(table["turbo2"], [4.0, 8.0], [0, 256])
    assert settings == [
        {"rescore": True, "oversampling": 4.0},
        {"rescore": True, "oversampling": 4.0, "hnsw_ef": 256},
        {"rescore": True, "oversampling": 8.0},
        {"rescore": True, "oversampling": 8.0, "hnsw_ef": 256},
    ]
    assert bench.search_settings(table["f16-hnsw"], [4.0, 8.0], [0, 256]) == [{}, {"hnsw_ef": 256}]
    assert bench.search_settings(table["dense-exact"], [8.0], [256]) == [{"exact": True}]
    assert bench.search_settings(table["sparse"], [8.0], [256]) == [{}]
    assert bench.search_settings(table["int8"]) == [{"rescore": True, "oversampling": 4.0}]


def test_every_search_setting_is_measured_on_the_configurations_one_collection(bench, report):
    result, output = report
    rows, sweeps = result["rows"], result["search"]
    for row in rows:
        mine = [s for s in sweeps if (s["n"], s["config"]) == (row["n"], row["config"])]
        expected = bench.search_settings(bench.configs(4, 4.0)[row["config"]], [4.0, 8.0], [0, 64])
        assert [(s["oversampling"], s["hnsw_ef"]) for s in mine] == [
            (setting.get("oversampling"), setting.get("hnsw_ef", 0)) for setting in expected
        ]
        assert {f: mine[0][f] for f in ("p50_ms", "p99_ms", "recall_at_10")} == {
            f: row[f] for f in ("p50_ms", "p99_ms", "recall_at_10")
        }  # the row is the configuration's own setting
        assert all(s["warm_passes"] == 1 and 0 < s["p50_ms"] <= s["p99_ms"] for s in mine)
    assert len([s for s in sweeps if s["config"] == "turbo2"]) == 2 * 4
    assert "| turbo2 | 300 | 8 | 64 | 1 |" in (output / "scale.md").read_text()


def test_the_binary_encodings_are_configurations_named_by_their_bits_and_query(bench):
    table = bench.configs()
    binary = {name: options for name, (_, options, _) in table.items() if name.startswith("binary")}
    assert binary["binary"] == {
        "vectors": "dense",
        "quantization": QuantizationSettings("binary"),
        "on_disk": True,
    }
    settings = {name: options["quantization"] for name, options in binary.items()}
    assert {name: (q.kind, q.binary_bits, q.binary_query) for name, q in settings.items()} == {
        "binary": ("binary", "1", "binary"),
        "binary-q8": ("binary", "1", "scalar8bits"),
        "binary-q4": ("binary", "1", "scalar4bits"),
        "binary1.5": ("binary", "1.5", "binary"),
        "binary1.5-q8": ("binary", "1.5", "scalar8bits"),
        "binary1.5-q4": ("binary", "1.5", "scalar4bits"),
        "binary2": ("binary", "2", "binary"),
        "binary2-q8": ("binary", "2", "scalar8bits"),
        "binary2-q4": ("binary", "2", "scalar4bits"),
    }
    assert table["binary"][0] == "binary + rescore (x4), full vectors on disk"
    assert table["binary2-q8"][0] == "binary 2-bit, query scalar8bits + rescore (x4), full vectors on disk"
    assert "binary" in bench.DEFAULT_CONFIGS and "binary2" not in bench.DEFAULT_CONFIGS


def test_turbo_widths_are_configurations_named_by_their_bits(bench):
    table = bench.configs()
    turbo = {name: options for name, (_, options, _) in table.items() if name.startswith("turbo")}
    assert turbo == {
        f"turbo{bits}": {
            "vectors": "dense",
            "quantization": QuantizationSettings("turbo", turbo_bits=bits),
            "on_disk": True,
        }
        for bits in ("1", "1.5", "2", "4")
    }
    assert table["turbo4"][0] == "turbo 4-bit + rescore (x4), full vectors on disk"
    assert table["turbo1.5"][2] == {"rescore": True, "oversampling": 4.0}
    assert not any(name.startswith("turbo") for name in bench.DEFAULT_CONFIGS)


def _run_dense_exact(bench, sizes: list[int], workdir: Path, **limits):
    """The script's ``run`` of the dense-exact configuration over :func:`_source` (three of its rows as
    queries) at ``sizes``."""
    source = _source()
    return bench.run(
        source, source[:3], sizes, ["dense-exact"], workdir, model_name="m", clusters=None, **limits
    )


def test_a_run_that_would_not_fit_in_memory_stops_before_it_starts(bench, tmp_path):
    with pytest.raises(MemoryError, match=r"dense-exact at N = 1,000,000 needs about 0\.2 GiB"):
        _run_dense_exact(bench, [1000, 1_000_000], tmp_path, available=2**20)
    assert list(tmp_path.iterdir()) == []  # nothing built
    need = bench.memory_plan({"x": bench_spec(dim=4000)}, [10, 1_000_000], active=3000.0)[0]
    assert need.bytes == 1_000_000 * 4000 * 4 * bench.MEMORY_OVERHEAD


def test_a_run_that_would_not_fit_on_disk_stops_before_it_starts(bench, tmp_path):
    with pytest.raises(
        OSError, match=r"needs more disk than the 0\.0 GiB available: dense-exact at N = 1,000"
    ):
        _run_dense_exact(bench, [100, 1000], tmp_path, free_disk=2**10)
    assert list(tmp_path.iterdir()) == []  # nothing built
    spec = bench_spec(dim=4000, quantization=QuantizationSettings("turbo", turbo_bits="2"), on_disk=True)
    assert bench.stored_bytes(spec, active=3000.0) == 16000 + 1008  # the full vectors, then their copy
    need = bench.memory_plan({"x": spec}, [1_000_000], 3000.0, bench.stored_bytes, bench.DISK_OVERHEAD)[0]
    assert need.bytes == 1_000_000 * 17008 * bench.DISK_OVERHEAD


def bench_spec(**options):
    from lens_embed.serving.collections import CollectionSpec

    return CollectionSpec(model_name="m", model_key="k", **options)


def test_the_memory_estimate_counts_what_stays_in_ram(bench):
    def resident(**options):
        return bench.resident_bytes(bench_spec(dim=4000, **options), active=3000.0)

    assert resident(dense_dtype="float16") == 8000
    assert resident(quantization=QuantizationSettings("int8"), on_disk=True) == 4000
    assert resident(quantization=QuantizationSettings("binary"), on_disk=True) == 500
    binary15 = QuantizationSettings("binary", binary_bits="1.5", binary_query="scalar8bits")
    assert resident(quantization=binary15, on_disk=True) == 750
    assert resident(quantization=QuantizationSettings("binary", binary_bits="2"), on_disk=True) == 1000
    # TurboQuant: 4 bits, and 8 bytes a vector
    assert resident(quantization=QuantizationSettings("turbo"), on_disk=True) == 2008
    assert resident(quantization=QuantizationSettings("turbo", turbo_bits="1"), on_disk=True) == 508
    assert resident(quantization=QuantizationSettings("turbo", turbo_bits="2")) == 16000 + 1008
    assert resident(vectors="sparse") == 16 * 3000
    assert resident(vectors="sparse", max_active_dims=256) == 16 * 256


def test_a_configuration_too_slow_for_its_next_size_is_stopped_saying_so(bench, tmp_path):
    rows, stopped, _ = _run_dense_exact(bench, [100, 200], tmp_path, time_limit=0.0)
    assert [row["n"] for row in rows] == [100]
    assert len(stopped) == 1 and stopped[0].startswith("dense-exact: stopped before N = 200: extrapolated")


def test_growth_exponents_and_extrapolation(bench):
    assert bench.growth_exponent([10, 100, 1000], [3, 30, 300]) == pytest.approx(1.0)
    assert bench.growth_exponent([10, 1000], [5, 5]) == pytest.approx(0.0)
    assert bench.growth_exponent([10], [5]) is None
    assert bench.extrapolated_seconds([10, 100], [1.0, 100.0], 1000) == pytest.approx(10_000.0)  # N^2
    assert bench.extrapolated_seconds([10], [2.0], 100) == pytest.approx(20.0)  # linear from one size


def test_capacity_arithmetic_on_known_numbers(bench):
    node = 64 * 2**30
    rows = bench.capacity({"x": (1000.0, 2000.0)}, measured_k=4000, node_ram=node)
    table = {(r.docs, r.k): r for r in rows}
    assert len(rows) == 4
    r = table[10_000_000, 4000]
    assert (r.ram_bytes, r.disk_bytes, r.nodes, r.measured) == (1e10, 2e10, 1, True)
    r = table[100_000_000, 8000]  # 2e11 bytes over 48 GiB usable a node: 3.88 -> 4
    assert (r.ram_bytes, r.disk_bytes, r.measured) == (2e11, 4e11, False)
    assert r.nodes == math.ceil(2e11 / (node * bench.NODE_HEADROOM)) == 4
    markdown = bench.capacity_markdown(rows, node, "test")
    assert "| x | 100M | 8000 | extrapolated | 186.3 | 372.5 | 4 |" in markdown


def test_runs_split_by_the_memory_check_are_reported_together(bench, report, tmp_path):
    result, _ = report
    rows = result["rows"]
    exact = [row for row in rows if row["config"] == "dense-exact"]
    rest = [row for row in rows if row["config"] != "dense-exact"]
    first, second, again = tmp_path / "first.json", tmp_path / "second.json", tmp_path / "again.json"
    searched = [s for s in result["search"] if s["config"] == "dense-exact"]
    first.write_text(json.dumps({**result, "rows": exact, "search": searched, "stopped": []}))
    # a file written before scale.json said its K (or held search rows): K comes from the other file
    second.write_text(
        json.dumps(
            {"headings": result["headings"], "rows": rest, "stopped": ["sparse: stopped before N = 600"]}
        )
    )
    together = bench.main(["--combine", str(first), str(second), "--output", str(tmp_path / "out")])
    assert together["rows"] == exact + rest and together["k"] == result["k"]
    assert together["headings"] == result["headings"]  # the same setup is said once
    assert together["stopped"] == ["sparse: stopped before N = 600"]
    assert together["growth"] == result["growth"] and together["capacity"] == result["capacity"]
    assert together["search"] == [s for s in result["search"] if s["config"] == "dense-exact"]
    assert json.loads((tmp_path / "out" / "scale.json").read_text()) == together
    with pytest.raises(ValueError, match="dense-exact measured by an earlier file too"):
        bench.main(["--combine", str(first), str(first), "--output", str(tmp_path / "twice")])
    again.write_text(json.dumps({"rows": exact, "stopped": []}))
    with pytest.raises(ValueError, match="pass --k"):
        bench.main(["--combine", str(again), str(second), "--output", str(tmp_path / "no-k")])
    assert bench.main(["--combine", str(again), "--k", "16", "--output", str(tmp_path / "k")])["k"] == 16
