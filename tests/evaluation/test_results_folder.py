"""A results folder holds one protocol's results, and what is wrong with it is named.

The protocol (dtype, instructions, attention, truncation) is recorded before the first task runs, so
an interrupted run cannot be resumed under another one; results of no recorded protocol are refused;
damaged results and empty task data are named by file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lens_embed.evaluation.encoders import load_encoder
from lens_embed.evaluation.offline import EmptyTaskError, offline_tasks
from lens_embed.evaluation.results import PROTOCOL_FILE
from lens_embed.evaluation.runner import ModelRun, evaluate_runs

PAIRS = [
    ("a man is playing a guitar", "a man plays the guitar"),
    ("the quick brown fox", "a fast brown fox"),
    ("the bank raised interest rates", "rates were raised by the central bank"),
    ("a child flies a red kite", "a kid is flying a kite in the park"),
    ("the cat sat on the windowsill", "a dog runs on the beach"),
    ("oilskin jackets keep the rain out", "large language models read every token"),
]


def _sts_folder(root: Path, name: str, rows: int = 12) -> None:
    folder = root / "sts" / name
    folder.mkdir(parents=True)
    lines = [
        json.dumps({"sentence1": first, "sentence2": second, "score": float(index % 6)})
        for index in range(rows)
        for first, second in [PAIRS[index % len(PAIRS)]]
    ]
    (folder / "test.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def sts_data(tmp_path: Path) -> Path:
    """Two small local STS tasks, One and Two."""
    root = tmp_path / "data"
    _sts_folder(root, "OneSTS")
    _sts_folder(root, "TwoSTS")
    return root


def _run(tiny_lens: Path, dtype: str = "float32", fail_on: str | None = None) -> ModelRun:
    """The tiny LENS model in ``dtype``; with ``fail_on``, the process 'dies' when that task starts."""
    encoder = load_encoder(tiny_lens, device="cpu", dtype=dtype)
    if fail_on is not None:
        encode = encoder.encode

        def encode_until_killed(inputs, *, task_metadata, **kwargs):
            if task_metadata.name == fail_on:
                raise KeyboardInterrupt  # as a kill would: nothing after this point runs
            return encode(inputs, task_metadata=task_metadata, **kwargs)

        encoder.encode = encode_until_killed
    return ModelRun(str(encoder.mteb_model_meta.name), lambda: encoder)


def _folder(output: Path) -> Path:
    (protocol,) = output.rglob(PROTOCOL_FILE)
    return protocol.parent


def test_a_run_killed_after_one_task_cannot_be_resumed_in_another_dtype(
    tiny_lens: Path, sts_data: Path, tmp_path: Path
) -> None:
    tasks = offline_tasks(sts_data, names=["OneSTS", "TwoSTS"])
    with pytest.raises(KeyboardInterrupt):
        evaluate_runs([_run(tiny_lens, fail_on="TwoSTS")], tasks, tmp_path / "out")
    folder = _folder(tmp_path / "out")
    assert (folder / "OneSTS.json").is_file() and not (folder / "TwoSTS.json").exists()
    assert json.loads((folder / PROTOCOL_FILE).read_text())["dtype"] == "float32"  # recorded before the kill
    with pytest.raises(ValueError, match="another protocol.*dtype: 'float32' there, 'bfloat16' now"):
        evaluate_runs([_run(tiny_lens, dtype="bfloat16")], tasks, tmp_path / "out")
    assert not (folder / "TwoSTS.json").exists()
    scores = evaluate_runs([_run(tiny_lens)], tasks, tmp_path / "out")  # the same protocol resumes
    assert [score.task for score in scores] == ["OneSTS", "TwoSTS"]


def test_results_of_no_recorded_protocol_are_refused_unless_overwritten(
    tiny_lens: Path, sts_data: Path, tmp_path: Path
) -> None:
    """A folder an older lens-embed left without its record after a kill, or another tool's results."""
    one, both = offline_tasks(sts_data, names=["OneSTS"]), offline_tasks(sts_data, names=["OneSTS", "TwoSTS"])
    evaluate_runs([_run(tiny_lens)], both, tmp_path / "out")
    folder = _folder(tmp_path / "out")
    (folder / PROTOCOL_FILE).unlink()
    before = (folder / "OneSTS.json").read_bytes()
    with pytest.raises(
        ValueError, match=f"results of an unknown protocol \\(no {PROTOCOL_FILE}.*--overwrite"
    ):
        evaluate_runs([_run(tiny_lens, dtype="bfloat16")], both, tmp_path / "out")
    with pytest.raises(
        ValueError, match="--overwrite recomputes only this run's tasks and TwoSTS would keep the old results"
    ):
        evaluate_runs([_run(tiny_lens, dtype="bfloat16")], one, tmp_path / "out", overwrite=True)
    assert (folder / "OneSTS.json").read_bytes() == before and not (folder / PROTOCOL_FILE).exists()
    evaluate_runs([_run(tiny_lens, dtype="bfloat16")], both, tmp_path / "out", overwrite=True)
    assert json.loads((folder / PROTOCOL_FILE).read_text())["dtype"] == "bfloat16"


def test_a_truncated_result_or_protocol_is_named(tiny_lens: Path, sts_data: Path, tmp_path: Path) -> None:
    tasks = offline_tasks(sts_data, names=["OneSTS"])
    evaluate_runs([_run(tiny_lens)], tasks, tmp_path / "out")
    folder = _folder(tmp_path / "out")
    result, protocol = folder / "OneSTS.json", folder / PROTOCOL_FILE
    whole = result.read_bytes()
    result.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(
        ValueError, match=rf"{re.escape(str(result))}:\d+:\d+: not valid JSON .*a damaged task result"
    ):
        evaluate_runs([_run(tiny_lens)], tasks, tmp_path / "out")
    result.write_bytes(whole)
    protocol.write_bytes(protocol.read_bytes()[:40])
    with pytest.raises(ValueError, match=rf"{re.escape(str(protocol))}:\d+:\d+: not valid JSON"):
        evaluate_runs([_run(tiny_lens)], tasks, tmp_path / "out")


@pytest.mark.parametrize(
    ("category", "files", "error", "message"),
    [
        (
            "sts",
            {"test.jsonl": ""},
            EmptyTaskError,
            "test.jsonl: no rows (an empty file leaves task Empty nothing to evaluate)",
        ),
        (
            "sts",
            {"test.jsonl": '{"sentence1": "a", "sentence2": "b", "score": 1}\n{"sent'},
            ValueError,
            "test.jsonl:2:2: not valid JSON",
        ),
        (
            "retrieval",
            {
                "corpus.jsonl": '{"_id": "d1", "text": "t"}\n',
                "queries.jsonl": '{"_id": "q1", "text": "q"}\n',
                "qrels/test.tsv": "query-id\tcorpus-id\tscore\n",
            },
            EmptyTaskError,
            "test.tsv: no relevance judgements",
        ),
        (
            "retrieval",
            {
                "corpus.jsonl": '{"_id": "d1", "text": "t"}\n',
                "queries.jsonl": '{"_id": "q1", "text": "q"}\n',
                "qrels/test.tsv": "query-id\tcorpus-id\tscore\nq2\td1\t1\n",
            },
            EmptyTaskError,
            "no query of queries.jsonl is judged in qrels/test.tsv",
        ),
    ],
)
def test_empty_or_damaged_task_data_is_named(
    tmp_path: Path, category: str, files: dict[str, str], error: type[Exception], message: str
) -> None:
    """Not mteb's "Column 'score' doesn't exist" (or a bare JSON error) later, without a file."""
    folder = tmp_path / category / "Empty"
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    (task,) = offline_tasks(tmp_path, names=["Empty"])
    with pytest.raises(error, match=f"{re.escape(str(folder))}.*{re.escape(message)}"):
        task.load_data()
