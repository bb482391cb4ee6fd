"""The recipe of the embedded default (``make train-default``): teacher-mined negatives, classification
rows, teacher scores, and the train -> package -> assemble path end to end on a tiny model."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from training_toy import retrieval_rows, toy_config, write_jsonl

from lens_embed.build import save_staged
from lens_embed.embedded import assemble, read_parameters
from lens_embed.loading import load_lens_model
from lens_embed.model import encode
from lens_embed.training.data import task_from_rows
from lens_embed.training.default_recipe import (
    BANKING_PROMPT,
    BANKING_TYPE,
    Recipe,
    banking_rows,
    base_parameters,
    package,
    recipe_for,
    scored,
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


def test_the_parameter_file_assembles_exactly_the_model_training_produced(tiny_mistral, tiny_lens, tmp_path):
    parameters = base_parameters(tiny_lens, tiny_mistral)
    base = tmp_path / "base"
    save_staged(assemble(tiny_mistral, parameters, device="cpu"), base, overwrite=False)
    data = write_jsonl(tmp_path / "data" / "toy.jsonl", retrieval_rows())
    trained = train(toy_config(base, [data], tmp_path / "trained", max_steps=3, lora_r=4, lora_alpha=8))
    path, sha256, difference = package(trained, parameters, tiny_mistral, tmp_path / "package")
    assert difference <= 1e-6
    assembled = assemble(tiny_mistral, read_parameters(path, sha256), device="cpu")
    reference = load_lens_model(trained, device="cpu")
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
    from lens_embed.training.default_recipe import build_parser, main

    args = build_parser().parse_args(["--output", "out"])
    assert Recipe(**{name: getattr(args, name) for name in vars(Recipe())}) == Recipe()
    with pytest.raises(SystemExit) as stopped:
        main(["--data", str(tmp_path), "--output", str(tmp_path / "out")])
    assert stopped.value.code == 2
    assert f"missing {tmp_path / 'training' / 'msrp_train.jsonl'}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_dense_comparison_trains_the_same_recipe_without_the_lexicon_only_flops_term() -> None:
    recipe = Recipe()
    assert recipe.document_regularizer_weight > 0 and recipe.query_regularizer_weight > 0
    assert recipe_for(recipe, "lens") == recipe
    dense = recipe_for(recipe, "dense")
    assert (dense.document_regularizer_weight, dense.query_regularizer_weight) == (0.0, 0.0)
    weights = ("document_regularizer_weight", "query_regularizer_weight")
    assert {k: v for k, v in vars(dense).items() if k not in weights} == {
        k: v for k, v in vars(recipe).items() if k not in weights
    }
