"""Data: validation naming the bad line, groups, instructions, task-homogeneous batching."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
import torch
from sentence_transformers.base.sampler import DefaultBatchSampler
from torch.utils.data import ConcatDataset, RandomSampler
from training_toy import classification_rows, retrieval_rows, write_jsonl

from lens_embed.base.prompts import query_prompt
from lens_embed.training.data import (
    TrainingDataError,
    build_group,
    build_task_dataset,
    load_tasks,
    read_training_rows,
    sample_negatives,
    task_spec,
)
from lens_embed.training.sampler import TaskHomogeneousBatchSampler

SHARED_TRAINING = Path(__file__).resolve().parents[3] / "shared" / "data" / "training"


def _file_with_bad_line(tmp_path: Path, bad: dict | str, line: int = 3) -> Path:
    rows = retrieval_rows()[:4]
    lines = [json.dumps(row) for row in rows]
    lines.insert(line - 1, bad if isinstance(bad, str) else json.dumps(bad))
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"query": "q", "pos": ["p"], "neg": [], "type": "retrieval"}, "missing field(s) prompt"),
        ({"query": "q", "pos": [], "neg": [], "type": "retrieval", "prompt": "x"}, "'pos' is empty"),
        ({"query": "q", "pos": ["p"], "neg": [], "type": "ranking", "prompt": "x"}, "unknown type 'ranking'"),
        ({"query": "q", "pos": "p", "neg": [], "type": "retrieval", "prompt": "x"}, "'pos' must be a list"),
        ({"query": "q", "pos": ["p"], "neg": [3], "type": "retrieval", "prompt": "x"}, "'neg' holds 3"),
        ('{"query": "q", "pos": [', "not valid JSON"),
    ],
)
def test_bad_rows_are_rejected_naming_the_line(tmp_path: Path, bad: dict | str, message: str) -> None:
    path = _file_with_bad_line(tmp_path, bad, line=3)
    with pytest.raises(TrainingDataError) as error:
        read_training_rows(path)
    assert f"{path}:3:" in str(error.value)
    assert message in str(error.value)


def test_invalid_utf8_is_named_with_the_file_line_and_byte_offset(tmp_path: Path) -> None:
    good = (json.dumps(retrieval_rows()[0]) + "\n").encode()
    bad = json.dumps(retrieval_rows()[1]).encode().replace(b"the", b"th\xe9", 1) + b"\n"
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(good + bad)
    offset = len(good) + bad.index(b"\xe9")
    with pytest.raises(TrainingDataError, match=rf"latin1.jsonl:2: not valid UTF-8 \(byte offset {offset}\)"):
        load_tasks([path])


def test_mixed_types_in_one_file_are_rejected(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "mixed.jsonl", retrieval_rows()[:2] + classification_rows()[:2])
    with pytest.raises(TrainingDataError, match="mix types"):
        load_tasks([path])


def test_hf_dataset_rows_are_validated_by_index() -> None:
    import datasets

    rows = retrieval_rows()[:3]
    rows[1] = {**rows[1], "type": "nonsense"}
    with pytest.raises(TrainingDataError, match="row 1: unknown type"):
        load_tasks([datasets.Dataset.from_list(rows)])


def test_shared_training_files_load_with_their_types() -> None:
    if not SHARED_TRAINING.is_dir():
        pytest.skip("shared training data not present")
    tasks = {task.name: task for task in load_tasks([SHARED_TRAINING])}
    assert tasks["scifact_train"].spec.symmetric is False
    assert tasks["stsb_train"].spec.symmetric and tasks["stsb_train"].spec.in_batch_negatives
    assert len(tasks["msrp_train"].rows) == 2753


def test_asymmetric_group_instructs_only_the_query() -> None:
    row = retrieval_rows()[0]
    group = build_group(row, task_spec("retrieval"), 3, random.Random(0), with_scores=False)
    assert group["query"] == query_prompt("Find the sentence") + row["query"]
    assert group["positive"] == row["pos"][0]
    assert {group["negative_1"], group["negative_2"]} == set(row["neg"])


def test_sts_group_instructs_both_sides() -> None:
    row = {**classification_rows()[0], "type": "symmetric_sts"}
    group = build_group(row, task_spec("symmetric_sts"), 3, random.Random(0), with_scores=False)
    prefix = query_prompt("Classify the topic")
    assert all(
        group[column].startswith(prefix) for column in ("query", "positive", "negative_1", "negative_2")
    )


def test_negatives_are_sampled_with_replacement_when_too_few() -> None:
    indices = sample_negatives(["a", "b"], 7, random.Random(0))
    assert len(indices) == 7 and set(indices) == {0, 1}
    assert max(Counter(indices).values()) <= 4  # cycled evenly, not one value repeated
    assert len(set(sample_negatives(list("abcdefgh"), 7, random.Random(0)))) == 7


def test_only_1neg_caps_the_group_and_scores_follow_the_sampled_texts(tmp_path: Path) -> None:
    rows = [
        {
            "query": f"q{i}",
            "pos": ["p0", "p1"],
            "neg": ["n0", "n1", "n2"],
            "pos_scores": [9.0, 8.0],
            "neg_scores": [1.0, 2.0, 3.0],
            "type": "only_1neg",
            "prompt": "x",
        }
        for i in range(4)
    ]
    (task,) = load_tasks([write_jsonl(tmp_path / "one.jsonl", rows)])
    dataset = build_task_dataset(task, group_size=8, seed=42)
    assert dataset.column_names == ["query", "positive", "negative_1", "scores"]
    for example in dataset:
        assert example["scores"][0] == {"p0": 9.0, "p1": 8.0}[example["positive"]]
        assert example["scores"][1] == {"n0": 1.0, "n1": 2.0, "n2": 3.0}[example["negative_1"]]


def _sampler(
    sizes: list[int], batch_size: int | list[int], world_size: int, seed: int = 3
) -> TaskHomogeneousBatchSampler:
    datasets_ = [list(range(size)) for size in sizes]
    generator = torch.Generator()
    batch_sizes = batch_size if isinstance(batch_size, list) else [batch_size] * len(sizes)
    children = [
        DefaultBatchSampler(RandomSampler(part, generator=generator), batch_size=size, drop_last=True)
        for part, size in zip(datasets_, batch_sizes, strict=True)
    ]
    return TaskHomogeneousBatchSampler(
        ConcatDataset(datasets_), children, generator, seed, world_size=world_size
    )


def _task_of(index: int, sizes: list[int]) -> int:
    bounds = [sum(sizes[: i + 1]) for i in range(len(sizes))]
    return next(task for task, bound in enumerate(bounds) if index < bound)


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_every_global_batch_is_one_task(world_size: int) -> None:
    sizes = [40, 23, 17]
    batches = list(_sampler(sizes, batch_size=4, world_size=world_size))
    assert len(batches) == len(_sampler(sizes, 4, world_size))
    assert len(batches) % world_size == 0
    for start in range(0, len(batches), world_size):
        tasks = {_task_of(index, sizes) for batch in batches[start : start + world_size] for index in batch}
        assert len(tasks) == 1
    used = [index for batch in batches for index in batch]
    assert len(used) == len(set(used))  # no example twice in an epoch
    assert {_task_of(index, sizes) for index in used} == {0, 1, 2}


def test_sampler_order_is_seeded_by_epoch() -> None:
    first, again = _sampler([40, 24], 4, 2), _sampler([40, 24], 4, 2)
    assert list(first) == list(again)
    again.set_epoch(1)
    assert list(first) != list(again)


def test_accelerate_hands_every_rank_its_batches_whatever_their_task_batch_size() -> None:
    """Under DDP accelerate deals the sampler's batches to the ranks; batches of a task with a
    smaller batch size (symmetric tasks) must reach them too."""
    from accelerate.data_loader import BatchSamplerShard

    sizes, batch_sizes = [40, 24], [4, 2]
    sampler = _sampler(sizes, batch_sizes, world_size=2)
    expected = list(sampler)
    ranks = [
        list(BatchSamplerShard(sampler, 2, rank, split_batches=False, even_batches=False))
        for rank in range(2)
    ]
    assert [batch for pair in zip(*ranks, strict=True) for batch in pair] == expected
    assert {len(batch) for batch in expected} == {4, 2}


def test_a_dataset_folder_with_a_loading_script_is_refused_by_name_without_running_it(tmp_path, capsys):
    from lens_embed.commands import main

    marker = tmp_path / "ran"
    folder = tmp_path / "scripted"
    folder.mkdir()
    (folder / "scripted.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    output = tmp_path / "mined.jsonl"
    assert (
        main(["mine-negatives", "--data", f"hf:{folder}", "--output", str(output), "--method", "bm25"]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(
        f"lens-embed mine-negatives: error: hf:{folder}: datasets cannot load it (Dataset scripts"
    )
    assert "Traceback" not in err and not marker.exists() and not output.exists()
