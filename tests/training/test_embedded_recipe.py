"""The recipe of the embedded default (``make train-default``): teacher-mined negatives, classification
rows, teacher scores, and the train -> package -> assemble path end to end on a tiny model."""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from training_toy import retrieval_rows, toy_config, write_jsonl

from lens_embed.commands import main, parse
from lens_embed.models.build import save_staged
from lens_embed.models.embedded import assemble, read_parameters
from lens_embed.models.loading import load_lens_model
from lens_embed.models.model import encode
from lens_embed.training import default_recipe
from lens_embed.training.data import task_from_rows
from lens_embed.training.default_recipe import (
    BANKING_PROMPT,
    BANKING_TYPE,
    Recipe,
    banking_rows,
    base_parameters,
    package,
    recipe_for,
    recorded_command,
    scored,
    source_files,
    training_config,
    with_negatives,
)
from lens_embed.training.trainer import train


def unit_vectors(texts: list[str], seed: int = 0) -> dict[str, np.ndarray]:
    """A stand-in teacher: a fixed random unit vector per text."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(len(texts), 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return dict(zip(texts, vectors, strict=True))


def test_rows_without_negatives_get_the_teachers_hardest_never_their_own_texts() -> None:
    rows = retrieval_rows(with_negatives=False)
    rows[0] = {**rows[0], "neg": ["kept as it is"]}
    task = task_from_rows("toy", rows)
    texts = list(dict.fromkeys(t for row in rows for t in (row["query"], *row["pos"], *row["neg"])))
    vectors = unit_vectors(texts)
    completed = with_negatives(task, vectors, count=3)
    assert completed[0]["neg"] == ["kept as it is"]
    corpus = [text for text in dict.fromkeys(t for row in rows for t in (*row["pos"], *row["neg"]))]
    for row in completed[1:]:
        assert len(row["neg"]) == 3 and not {row["query"], *row["pos"]} & set(row["neg"])
        others = [text for text in corpus if text not in {row["query"], *row["pos"]}]
        ranked = sorted(others, key=lambda text: -float(vectors[text] @ vectors[row["query"]]))
        assert row["neg"] == ranked[:3]


def test_classification_rows_pair_a_text_with_its_label_against_the_closest_other_labels() -> None:
    examples = [{"text": f"{label} text {i}", "label": label} for label in ("a", "b", "c") for i in range(6)]
    vectors = unit_vectors([example["text"] for example in examples])
    recipe = Recipe(banking_per_label=2, banking_positives=3, negatives=4)
    rows = banking_rows(examples, vectors, recipe, random.Random(0))
    assert len(rows) == 6
    label = {example["text"]: example["label"] for example in examples}
    for row in rows:
        assert (row["type"], row["prompt"]) == (BANKING_TYPE, BANKING_PROMPT)
        assert len(row["pos"]) == 3 and row["query"] not in row["pos"]
        assert {label[text] for text in row["pos"]} == {label[row["query"]]}
        others = [e["text"] for e in examples if e["label"] != label[row["query"]]]
        ranked = sorted(others, key=lambda text: -float(vectors[text] @ vectors[row["query"]]))
        assert row["neg"] == ranked[:4]
    assert rows == banking_rows(examples, vectors, recipe, random.Random(0))  # seeded


def test_teacher_scores_are_cosines_over_the_teacher_temperature() -> None:
    vectors = unit_vectors(["q", "p", "n1", "n2"])
    row = scored({"query": "q", "pos": ["p"], "neg": ["n1", "n2"]}, vectors, temperature=0.05)
    assert row["pos_scores"] == pytest.approx([float(vectors["p"] @ vectors["q"]) / 0.05], abs=1e-5)
    assert row["neg_scores"] == pytest.approx(
        [float(vectors[n] @ vectors["q"]) / 0.05 for n in ("n1", "n2")], abs=1e-5
    )


@pytest.mark.parametrize(
    "position_top_k, dense_pooling",
    [(None, None), (2, None), (None, "mean")],
    ids=["whole", "per-position top 2", "hybrid, trained as one"],
)
def test_the_parameter_file_assembles_exactly_the_model_training_produced(
    tiny_mistral, tiny_lens, tmp_path, position_top_k, dense_pooling
):
    parameters = replace(
        base_parameters(tiny_lens, tiny_mistral), position_top_k=position_top_k, dense_pooling=dense_pooling
    )
    base = tmp_path / "base"
    save_staged(assemble(tiny_mistral, parameters, device="cpu"), base, overwrite=False)
    data = write_jsonl(tmp_path / "data" / "toy.jsonl", retrieval_rows())
    run = toy_config(base, [data], tmp_path / "trained", max_steps=3, lora_r=4, lora_alpha=8)
    if dense_pooling is not None:  # the recipe's FLOPS term on the lexicon part, as the default trains
        run = replace(run, document_regularizer_weight=1.0, query_regularizer_weight=0.5)
    trained = train(run)
    path, sha256, difference = package(trained, parameters, tiny_mistral, tmp_path / "package")
    assert difference <= 1e-6
    read = read_parameters(path, sha256)  # the file rebuilds the pooling
    assert (read.position_top_k, read.dense_pooling) == (position_top_k, dense_pooling)
    assert ("dense_pooling" in read.metadata()) == (dense_pooling is not None)  # none: the file as before
    assembled = assemble(tiny_mistral, read, device="cpu")
    reference = load_lens_model(trained, device="cpu")
    assert assembled[1].position_top_k == reference[1].position_top_k == position_top_k
    assert assembled[1].dense_pooling == reference[1].dense_pooling == dense_pooling
    width = 16 + (assembled[1].hidden_size if dense_pooling else 0)
    assert assembled.get_embedding_dimension() == reference.get_embedding_dimension() == width
    texts = ["the quick brown fox", "a man is playing a guitar on the street"]
    for query in (False, True):
        mine = encode(assembled, texts, query=query, convert_to_tensor=True)
        theirs = encode(reference, texts, query=query, convert_to_tensor=True)
        assert torch.allclose(mine, theirs, atol=1e-6, rtol=0)
    untrained = encode(load_lens_model(base, device="cpu"), texts, query=True, convert_to_tensor=True)
    assert not torch.allclose(
        untrained, encode(assembled, texts, query=True, convert_to_tensor=True), atol=1e-4
    )
    assert json.loads((trained / "lora_adapter" / "adapter_config.json").read_text())["r"] == 4


def test_the_command_line_holds_the_recipe_and_names_missing_data(tmp_path, capsys) -> None:
    options = parse(["train-default", "--output", "out"])
    assert options.recipe() == Recipe() and (options.data, options.base) == ("../shared/data", "lens")
    with pytest.raises(ValueError, match="Recipe steps: must be >= 1, got 0"):
        Recipe(steps=0)  # the API gets the command line's checks
    assert main(["train-default", "--data", str(tmp_path), "--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"lens-embed train-default: error: --data {tmp_path}: missing ")
    assert f"missing {tmp_path / 'training' / 'msrp_train.jsonl'}" in error
    assert not (tmp_path / "out").exists()


def test_the_dense_comparison_trains_the_same_recipe_without_the_lens_only_options() -> None:
    recipe = Recipe(position_top_k=4, document_l1_weight=0.1, dense_pooling="mean")
    assert recipe.document_regularizer_weight > 0 and recipe.query_regularizer_weight > 0
    assert recipe_for(recipe, "lens") == recipe
    dense = recipe_for(recipe, "dense")
    assert (dense.document_regularizer_weight, dense.query_regularizer_weight) == (0.0, 0.0)
    assert (dense.position_top_k, dense.document_l1_weight, dense.dense_pooling) == (0, 0.0, "none")
    weights = (
        "document_regularizer_weight",
        "query_regularizer_weight",
        "position_top_k",
        "document_l1_weight",
        "dense_pooling",
    )
    assert {k: v for k, v in vars(dense).items() if k not in weights} == {
        k: v for k, v in vars(recipe).items() if k not in weights
    }


def test_the_sparse_options_reach_the_training_run_and_the_record_names_no_machine_path(tmp_path) -> None:
    argv = ["train-default", "--data", str(tmp_path / "data"), "--output", str(tmp_path / "out")]
    argv += ["--position-top-k", "4", "--topk-temperature", "0.5"]
    argv += ["--document-l1-weight", "0.2", "--query-l1-weight", "0.1", "--dense-pooling", "mean"]
    recipe = parse(argv).recipe()
    assert recipe.dense_pooling == "mean" and Recipe().dense_pooling == "none"  # default: lexicon only
    config = training_config(tmp_path / "base", tmp_path / "data", tmp_path / "out", recipe)
    assert (config.position_top_k, config.topk_temperature) == (4, 0.5)
    assert (config.document_l1_weight, config.query_l1_weight) == (0.2, 0.1)
    assert training_config(tmp_path, tmp_path, tmp_path, Recipe()).position_top_k is None  # 0: off
    command = recorded_command(recipe, "lens")
    assert str(tmp_path) not in command and command.startswith(
        "lens-embed train-default --data DATA --output OUTPUT --position-top-k 4"
    )
    assert command.endswith("--dense-pooling mean")
    assert parse(command.split()[1:]).recipe() == recipe  # the record runs the same recipe
    assert recorded_command(Recipe(), "dense").endswith("--output OUTPUT --base dense")


def test_a_temperature_without_a_top_k_is_refused_before_anything_runs(tmp_path, capsys) -> None:
    for name in ("msrp_train", "scifact_train", "stsb_train", "twitter_url_train"):
        (tmp_path / "training").mkdir(exist_ok=True)
        (tmp_path / "training" / f"{name}.jsonl").write_text("")
    (tmp_path / "classification" / "Banking77Classification").mkdir(parents=True)
    (tmp_path / "classification" / "Banking77Classification" / "train.jsonl").write_text("")
    argv = ["train-default", "--data", str(tmp_path), "--output", str(tmp_path / "out")]
    assert main([*argv, "--topk-temperature", "0.5"]) == 2
    assert "give --position-top-k too" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_work_folder_holding_a_base_of_another_dense_pooling_is_refused_before_any_work(
    tiny_lens, tmp_path, monkeypatch, capsys
) -> None:
    for path in source_files(tmp_path / "data"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    shutil.copytree(tiny_lens, tmp_path / "out" / "base")  # a lexicon-only run's base, which would be reused
    monkeypatch.setattr(default_recipe, "load_lens_model", lambda *args, **kwargs: pytest.fail("work began"))
    argv = ["train-default", "--data", str(tmp_path / "data"), "--output", str(tmp_path / "out")]
    assert main([*argv, "--dense-pooling", "mean"]) == 2
    error = capsys.readouterr().err
    assert (
        f"{tmp_path / 'out' / 'base'} has dense pooling none, the recipe mean: give another --output" in error
    )
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["base"]


@pytest.mark.parametrize(
    "options, error",
    [
        (["--group-size", "1"], "TrainConfig group_size: must be >= 2, got 1"),
        (["--output", "{tmp}/file"], "--output {tmp}/file is a file, not a folder"),
        (
            ["--output", "{tmp}/file/out"],
            "--output {tmp}/file/out lies under {tmp}/file, which is a file, not a folder",
        ),
    ],
    ids=["group-size-1", "output-a-file", "output-under-a-file"],
)
def test_a_recipe_the_run_would_refuse_is_refused_before_any_work(
    tmp_path, monkeypatch, capsys, options, error
):
    for path in source_files(tmp_path / "data"):  # the data is all there: only the option is wrong
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(default_recipe, "load_lens_model", lambda *args, **kwargs: pytest.fail("work began"))
    argv = ["train-default", "--data", str(tmp_path / "data"), "--output", str(tmp_path / "out")]
    assert main([*argv, *(option.format(tmp=tmp_path) for option in options)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"error: {error.format(tmp=tmp_path)}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "file"]
