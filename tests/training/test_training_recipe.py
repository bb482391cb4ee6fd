"""The README's "lens-embed vs the authors" table, row by row, against a plain transcription of the
authors' training code (their data loader's rules, their schedule, their precision choice), on tiny
models and data in the authors' bge-full-data layout."""

from __future__ import annotations

import ast
import random
import sys
from pathlib import Path

import pytest
from training_toy import classification_rows, retrieval_rows, write_jsonl

from lens_embed.base.prompts import query_prompt
from lens_embed.training.config import TrainConfig
from lens_embed.training.data import build_group, task_spec

TYPES = [
    "normal",
    "retrieval",
    "only_1neg",
    "symmetric_sts",
    "symmetric_clustering",
    "symmetric_class",
    "symmetric_classification",
    "symmetric_paraphrase",
    "symmetric_sts_v2",
]


# --- the authors' rules, transcribed from their data loader (all by substring of the type) ---
def authors_instructs_documents(task_type: str) -> bool:
    return "sts" in task_type or "clustering" in task_type


def authors_in_batch(task_type: str) -> bool:
    return not ("symmetric" in task_type and ("class" in task_type or "clustering" in task_type))


def authors_per_device_batch(
    task_type: str, batch_size: int, symmetric_batch_size: int, processes: int
) -> int:
    return symmetric_batch_size // processes if "symmetric" in task_type else batch_size


def authors_lr(step: int, peak: float, warmup: int, total: int) -> float:
    """transformers' linear schedule with warmup, which the authors' HF Trainer run uses."""
    if step < warmup:
        return peak * step / warmup
    return peak * max(0.0, (total - step) / (total - warmup))


@pytest.mark.parametrize("task_type", TYPES)
def test_which_texts_get_the_instruction(task_type: str) -> None:
    row = {**retrieval_rows()[0], "type": task_type}
    group = build_group(row, task_spec(task_type), 3, random.Random(0), with_scores=False)
    prefix = query_prompt(row["prompt"])
    assert group["query"] == prefix + row["query"]
    documents = [group["positive"], group["negative_1"], group["negative_2"]]
    assert [text.startswith(prefix) for text in documents] == [authors_instructs_documents(task_type)] * 3


def test_every_symmetric_types_documents_are_instructed_when_asked() -> None:
    assert task_spec("symmetric_class", "symmetric").instructed_documents
    assert not task_spec("symmetric_class").instructed_documents
    assert not task_spec("normal", "symmetric").instructed_documents


@pytest.mark.parametrize("task_type", TYPES)
def test_which_negatives_each_loss_sees(task_type: str) -> None:
    assert task_spec(task_type).in_batch_negatives == authors_in_batch(task_type)


@pytest.mark.parametrize("task_type", TYPES)
def test_per_task_type_batch_size_on_sixteen_devices(task_type: str) -> None:
    from lens_embed.training.trainer import per_device_batch_size

    config = TrainConfig(model="m", data=[], output="o")
    assert per_device_batch_size(task_spec(task_type), config, 16) == authors_per_device_batch(
        task_type, 32, 256, 16
    )


def test_an_unrecognised_type_is_an_error_not_silently_retrieval() -> None:
    from lens_embed.training.data import TrainingDataError

    with pytest.raises(TrainingDataError, match="unknown type 'ranking'"):
        task_spec("ranking")


@pytest.mark.parametrize(("cuda", "expected"), [(True, (True, False, True)), (False, (False, False, False))])
def test_fp16_and_gradient_checkpointing_are_chosen_on_a_gpu(cuda: bool, expected: tuple) -> None:
    from lens_embed.training.trainer import mixed_precision, uses_gradient_checkpointing

    config = TrainConfig(model="m", data=[], output="o")
    assert (*mixed_precision(config, cuda), uses_gradient_checkpointing(config, cuda)) == expected
    explicit = TrainConfig(model="m", data=[], output="o", precision="bf16", gradient_checkpointing=False)
    assert (*mixed_precision(explicit, cuda), uses_gradient_checkpointing(explicit, cuda)) == (
        False,
        True,
        False,
    )


def _bge_layout(root: Path) -> Path:
    """A folder shaped like bge-full-data: task folders, type strings as they occur, teacher scores
    on the retrieval rows, per-row prompts, and file names the old loader could not take."""
    scored = []
    for row in retrieval_rows():
        scored.append({**row, "type": "normal", "pos_scores": [0.9], "neg_scores": [0.2, 0.1]})
    classes = [{**row, "pos_scores": [0.8], "neg_scores": [0.3, 0.2, 0.1]} for row in classification_rows()]
    write_jsonl(root / "en" / "Retrieval" / "train.jsonl", scored)
    write_jsonl(root / "en" / "Classification-no_in_batch_neg" / "toy.class.v1.jsonl", classes)
    write_jsonl(
        root / "en" / "STS" / "eval.jsonl", [{**row, "type": "symmetric_sts"} for row in retrieval_rows()]
    )
    return root


def _bge_config(tiny_lens: Path, folder: Path, **options) -> TrainConfig:
    """A small run of the tiny model on a BGE-layout folder written under ``folder`` (output there too)."""
    return TrainConfig(
        model=str(tiny_lens),
        data=[str(_bge_layout(folder / "bge"))],
        output=str(folder / "out"),
        batch_size=4,
        symmetric_batch_size=2,
        group_size=3,
        report_to=[],
        **options,
    )


@pytest.fixture
def bge_trainer(tiny_lens: Path, tmp_path: Path):
    from lens_embed.training.trainer import build_trainer

    return build_trainer(_bge_config(tiny_lens, tmp_path, max_steps=2, warmup_steps=0))


RETRIEVAL, CLASSES, STS = (
    "en/Retrieval/train",
    "en/Classification-no_in_batch_neg/toy_class_v1",
    "en/STS/eval",
)


def test_a_bge_full_data_folder_trains_without_renaming(bge_trainer) -> None:
    assert set(bge_trainer.loss) == {RETRIEVAL, CLASSES, STS}
    assert [bge_trainer.loss[key].in_batch_negatives for key in (RETRIEVAL, CLASSES, STS)] == [
        True,
        False,
        True,
    ]


def test_distillation_only_on_in_batch_tasks(bge_trainer, tiny_lens: Path, tmp_path: Path) -> None:
    from lens_embed.training.trainer import build_trainer

    assert (
        bge_trainer.loss[RETRIEVAL].distill_weight == 1.0
        and "scores" in bge_trainer.train_dataset[RETRIEVAL].column_names
    )
    assert (
        bge_trainer.loss[CLASSES].distill_weight == 0.0
        and "scores" not in bge_trainer.train_dataset[CLASSES].column_names
    )
    every = build_trainer(_bge_config(tiny_lens, tmp_path / "every", distill_tasks="all"))
    assert every.loss[CLASSES].distill_weight == 1.0 and "scores" in every.train_dataset[CLASSES].column_names


def test_each_task_type_gets_its_batch_size(bge_trainer) -> None:
    sizes = {}
    for batch in bge_trainer.get_train_dataloader():
        sizes.setdefault(batch["dataset_name"], set()).add(len(batch["query_input_ids"]))
    assert sizes == {RETRIEVAL: {4}, CLASSES: {2}, STS: {2}}


def test_the_side_of_every_column_reaches_the_model(bge_trainer) -> None:
    """Instructed documents (STS) are pooled as queries, plain ones as documents: the collator tells
    the model by call (``task=``), never by the text."""
    assert bge_trainer.args.router_mapping[RETRIEVAL] == {
        "query": "query",
        "positive": "document",
        "negative_1": "document",
        "negative_2": "document",
    }
    assert set(bge_trainer.args.router_mapping[STS].values()) == {"query"}
    collator = bge_trainer.data_collator
    seen = []
    original = collator.preprocess_fn

    def spy(inputs, prompt=None, task=None, **kwargs):
        seen.append((inputs[0], task))
        return original(inputs, prompt=prompt, task=task, **kwargs)

    collator.preprocess_fn = spy
    for key in (RETRIEVAL, STS):
        collator([{**bge_trainer.train_dataset[key][0], "dataset_name": key}])
    sides = {text: task for text, task in seen}
    retrieval_example, sts_example = (
        bge_trainer.train_dataset[RETRIEVAL][0],
        bge_trainer.train_dataset[STS][0],
    )
    assert sides[retrieval_example["query"]] == "query" and sides[retrieval_example["positive"]] == "document"
    assert sides[sts_example["positive"]] == "query"


def test_learning_rate_warms_up_100_steps_then_decays_linearly(bge_trainer) -> None:
    defaults = TrainConfig(model="m", data=[], output="o")
    assert (defaults.warmup_steps, defaults.lr_scheduler, defaults.learning_rate) == (100, "linear", 1e-4)
    bge_trainer.args.warmup_steps = defaults.warmup_steps
    bge_trainer.args.learning_rate = defaults.learning_rate
    total = 300
    bge_trainer.create_optimizer_and_scheduler(num_training_steps=total)
    for step in range(total + 1):
        assert bge_trainer.lr_scheduler.get_last_lr()[0] == pytest.approx(
            authors_lr(step, 1e-4, 100, total), abs=1e-15
        )
        bge_trainer.optimizer.step()
        bge_trainer.lr_scheduler.step()


def test_continued_training_from_a_released_name_goes_through_the_one_loader(
    tiny_lens: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A released LENS name is resolved by lens_embed.models.loading.load_lens_model (which converts it once);
    here the loader training calls is pointed at the tiny model so no network is needed."""
    from lens_embed.training import negatives
    from lens_embed.training.trainer import train

    real_loader, names = negatives.load_lens_model, []

    def loader(name_or_path, device=None, **kwargs):
        names.append(name_or_path)
        return real_loader(
            tiny_lens if name_or_path == "yibinlei/LENS-d4000" else name_or_path, device=device, **kwargs
        )

    monkeypatch.setattr(negatives, "load_lens_model", loader)
    data = write_jsonl(tmp_path / "pairs.jsonl", retrieval_rows())
    output = train(
        TrainConfig(
            model="yibinlei/LENS-d4000",
            data=[str(data)],
            output=str(tmp_path / "out"),
            batch_size=4,
            group_size=3,
            max_steps=1,
            warmup_steps=0,
            report_to=[],
        )
    )
    assert names == ["yibinlei/LENS-d4000", "yibinlei/LENS-d4000"]  # the model trained, then the merge base
    assert (output / "modules.json").is_file() and (output / "lora_adapter" / "adapter_config.json").is_file()


def test_declaring_the_training_verbs_imports_nothing_heavy() -> None:
    """The verbs' options (TrainConfig, the recipe) are read by ``lens-embed --help``: no torch stack."""
    import subprocess

    code = (
        "import sys, lens_embed.commands.training_options; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'torch', 'sentence_transformers', 'transformers', 'datasets', 'peft'} "
        "or m.startswith('lens_embed.training')))"
    )
    root = Path(__file__).resolve().parents[2]
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
    ).stdout
    assert ast.literal_eval(output) == ["lens_embed.training", "lens_embed.training.config"]


def test_new_special_token_rows_are_normal_002_and_stay_frozen(tiny_mistral: Path, lens_model) -> None:
    """The authors' rows: transformers' initialisation N(0, initializer_range = 0.02), never trained."""
    import torch
    from transformers import AutoConfig

    from lens_embed.training.lora import apply_lora

    old = AutoConfig.from_pretrained(tiny_mistral).vocab_size
    embeddings = lens_model[0].auto_model.get_input_embeddings().weight
    new_rows = embeddings[old:].detach()
    expected = torch.randn(*new_rows.shape, generator=torch.Generator().manual_seed(0)) * 0.02  # build seed 0
    torch.testing.assert_close(new_rows, expected.to(new_rows.dtype))
    apply_lora(lens_model)
    assert not lens_model[0].auto_model.get_input_embeddings().weight.requires_grad
