"""A model's results in an mteb results folder: under which revision a model folder files them, which
files of a revision folder are task results, and their main scores as the card's rows.

Evaluation reads mteb's results and hands plain :class:`~lens_embed.models.card.EvalRow` s down to the card
(:mod:`lens_embed.models.card` imports nothing of evaluation or mteb). Nothing heavy is imported at module
level: mteb loads when a result is read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from lens_embed.base.inputs import read_json
from lens_embed.base.storage import EXPORT_FOLDERS
from lens_embed.models.card import EvalRow

# Beside model_meta.json: how the embeddings were computed (instructions, dtype, attention, truncation).
PROTOCOL_FILE = "lens_embed_protocol.json"
MODEL_META_FILE = "model_meta.json"
_CONFIG_FILES = (
    "config.json",
    "modules.json",
    "config_sentence_transformers.json",
    "sentence_bert_config.json",
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".npy")


def is_task_result(path: Path) -> bool:
    """Whether a ``.json`` file of a results folder is a task result (not the model meta or the protocol)."""
    return path.suffix == ".json" and path.name not in (MODEL_META_FILE, PROTOCOL_FILE)


def task_result_files(folder: Path) -> list[Path]:
    """The task results (``<Task>.json``) of one model revision's folder, sorted."""
    return [path for path in sorted(folder.glob("*.json")) if is_task_result(path)]


def model_revision(path: str | Path) -> str:
    """A content revision of a model folder: changes whenever its config or weights change.

    Hashes the config files and, for weight files, their size plus first and last MiB, so a
    multi-GB checkpoint gets a stable id in well under a second. The CPU backends' exports (``onnx/``,
    ``openvino/``) are left out: they are derived from these weights (and checked against them when loaded),
    so exporting does not move a folder's torch results to a new revision.
    """
    root = Path(path)
    digest = hashlib.sha1()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        if file.relative_to(root).parts[0] in EXPORT_FOLDERS:
            continue
        relative = file.relative_to(root).as_posix()
        if file.name in _CONFIG_FILES:
            digest.update(relative.encode() + file.read_bytes())
        elif file.suffix in _WEIGHT_SUFFIXES:
            size = file.stat().st_size
            with file.open("rb") as handle:
                head = handle.read(1 << 20)
                handle.seek(max(0, size - (1 << 20)))
                tail = handle.read(1 << 20)
            digest.update(relative.encode() + str(size).encode() + head + tail)
    return digest.hexdigest()[:12]


def read_task_result(path: Path) -> Any:
    """mteb's ``TaskResult`` of one result file, read by mteb's own reader; a damaged file (a write cut
    short, say) or one that is no task result is a ValueError naming it, not a bare decoder error."""
    from mteb.results import TaskResult

    try:
        read_json(path)  # text that is not JSON: named with its line
        return TaskResult.from_disk(path)
    except (ValueError, KeyError, TypeError) as error:
        reason = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        where = "" if reason.startswith(str(path)) else f"{path}: "
        raise ValueError(
            f"{where}{reason}: a damaged task result; delete it or evaluate the task again"
        ) from None


def load_eval_rows(
    results: str | Path, model_name: str | None = None, revision: str | None = None
) -> list[EvalRow]:
    """Main scores of one model in an mteb results folder, read with mteb's own results reader.

    The model is picked by name and/or revision; with neither, the folder must hold exactly one model.

    Args:
        results: an mteb results folder (``RESULTS/results/<org__model>/<revision>/<Task>.json``).
        model_name: the model's mteb name (``org/model``).
        revision: the model revision (the folder name under the model).
    """
    root = Path(results)
    if not (root / "results").is_dir():
        raise FileNotFoundError(f"{root} is not an mteb results folder (no {root / 'results'})")
    folders = {
        folder: _identity(folder)
        for folder in sorted({p.parent for p in (root / "results").glob("*/*/*.json")})
    }
    candidates = [
        folder
        for folder, (name, rev) in folders.items()
        if (model_name is None or name == model_name) and (revision is None or rev == revision)
    ]
    if len(candidates) != 1:
        found = sorted(f"{name} (revision {rev})" for name, rev in folders.values())
        wanted = f"name={model_name!r} revision={revision!r}"
        raise ValueError(
            f"{root}: {len(candidates)} model results match {wanted}; "
            f"the folder holds: {', '.join(found) or 'none'}"
        )
    rows = [row for file in task_result_files(candidates[0]) for row in _rows(read_task_result(file))]
    return sorted(rows, key=lambda r: (r.task_type, r.task))


def _identity(folder: Path) -> tuple[str, str]:
    """(model name, revision) of a results folder, as mteb reads them: model_meta.json, else the path."""
    meta = folder / MODEL_META_FILE
    data = read_json(meta) if meta.is_file() else {}
    return str(data.get("name") or folder.parent.name.replace("__", "/")), str(
        data.get("revision") or folder.name
    )


def _rows(task_result: Any) -> list[EvalRow]:
    """One row per split and subset, described by mteb's task metadata when mteb knows the task."""
    import mteb

    try:
        metadata = mteb.get_task(task_result.task_name).metadata
        task_type, dataset, main_score = metadata.type, metadata.dataset["path"], metadata.main_score
    except KeyError:  # a local task mteb does not know (offline suite folder under a new name)
        task_type, dataset, main_score = "Other", task_result.task_name, "main_score"
    return [
        EvalRow(
            task=task_result.task_name,
            task_type=task_type,
            dataset=dataset,
            dataset_revision=task_result.dataset_revision,
            split=split,
            subset=str(score["hf_subset"]),
            metric=main_score,
            value=round(100 * float(score["main_score"]), 2),
        )
        for split, scores in task_result.scores.items()
        for score in scores
    ]
