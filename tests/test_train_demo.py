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
