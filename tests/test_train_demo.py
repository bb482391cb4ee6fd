"""``make train-demo``'s own writes (the training and scoring it runs are tested in their packages)."""

from __future__ import annotations

import os
from pathlib import Path

from lens_embed import load_lens_model


def test_the_hybrid_base_is_saved_whole_with_the_usual_file_mode(
    benchmark_script, tiny_lens: Path, tmp_path: Path
) -> None:
    hybrid_model = benchmark_script("train_demo", folder="examples").hybrid_model
    umask = os.umask(0o027)
    try:
        folder = hybrid_model(tiny_lens, tmp_path / "hybrid")
    finally:
        os.umask(umask)
    assert {path.stat().st_mode & 0o777 for path in folder.rglob("*") if path.is_file()} == {0o640}
    assert load_lens_model(folder, device="cpu")[1].dense_pooling == "mean"
    assert sorted(os.listdir(tmp_path)) == ["hybrid"]  # staged beside it, renamed into place
    stamp = (folder / "modules.json").stat().st_mtime_ns
    assert hybrid_model(tiny_lens, folder) == folder and (folder / "modules.json").stat().st_mtime_ns == stamp


def test_the_demo_options_are_the_recipe_s_sizes_without_the_regulariser(
    benchmark_script, tmp_path: Path
) -> None:
    demo = benchmark_script("train_demo", folder="examples")
    args = demo.build_parser().parse_args(["--steps", "5", "--lr", "1e-3", "--max-seq-length", "64"])
    config = demo.recipe(tmp_path / "base", tmp_path / "data", tmp_path / "out", args)
    assert (config.max_steps, config.learning_rate, config.max_seq_length) == (5, 1e-3, 64)
    assert (config.symmetric_batch_size, config.group_size, config.seed) == (16, 4, 42)  # the demo's defaults
    assert (config.document_regularizer_weight, config.query_regularizer_weight) == (0.0, 0.0)
