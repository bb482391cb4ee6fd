"""The LENS model card: the README.md written beside every LENS model lens-embed saves.

sentence-transformers' generic card tells the reader to load ``"sentence_transformers_model_id"``
with a plain ``pip install``, neither of which works for LENS. This card says what the model is,
how to load it both ways, how queries and documents are embedded, what it was trained on, how it
scored (from an mteb results folder), under which licence, and how to cite it. Its metadata is
Hugging Face's own ``ModelCardData`` (``model-index`` included when there are results), so the hub
reads it like any other card.

``lens-embed card MODEL [--results RESULTS]`` rewrites the card of a saved model; provenance
recorded in the existing card (base model, licence, training) is kept.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lens_embed.citation import LENS_CITATION
from lens_embed.storage import atomic_write

if TYPE_CHECKING:
    from huggingface_hub import ModelCard
    from sentence_transformers import SentenceTransformer

CARD_FILE = "README.md"
LIBRARY_NAME = "sentence-transformers"
PIPELINE_TAG = "sentence-similarity"
CARD_TAGS = ["sentence-transformers", "sentence-similarity", "feature-extraction", "lens", "lexicon-based", "mteb"]
PAPER_URL = "https://aclanthology.org/2025.acl-long.930/"
EXAMPLE_INSTRUCTION = "Given a question, retrieve passages that answer the question."


@dataclass(frozen=True)
class ModelFacts:
    """What a reader needs to know about a LENS model, measured on the loaded model."""

    n_clusters: int
    embedding_dimension: int
    backbone: str
    decoder: bool
    bidirectional: bool
    dense_pooling: str | None
    dense_weight: float
    max_seq_length: int | None
    prompts: dict[str, str]

    @property
    def hybrid(self) -> bool:
        return self.dense_pooling is not None


@dataclass(frozen=True)
class Provenance:
    """Where a model comes from: base model, licence, training data and recipe (each when known)."""

    model_id: str | None = None
    base_model: str | None = None
    license: str | None = None
    training_datasets: list[str] = field(default_factory=list)
    training_recipe: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalRow:
    """One main score of an mteb result: task, split, subset, metric and value (x100)."""

    task: str
    task_type: str
    dataset: str
    dataset_revision: str | None
    split: str
    subset: str
    metric: str
    value: float


def model_facts(model: SentenceTransformer) -> ModelFacts:
    """Read the card's facts off a loaded LENS model (a clear error for other models)."""
    from lens_embed.backbone import is_decoder_config
    from lens_embed.model import lexicon_pooling

    pooling = lexicon_pooling(model)
    config = model[0].auto_model.config
    decoder = is_decoder_config(config)
    return ModelFacts(
        n_clusters=pooling.n_clusters,
        embedding_dimension=int(model.get_embedding_dimension()),
        backbone=config.model_type,
        decoder=decoder,
        bidirectional=not decoder or getattr(config, "is_causal", True) is False,
        dense_pooling=pooling.dense_pooling,
        dense_weight=pooling.dense_weight,
        max_seq_length=model.max_seq_length,
        prompts={name: text for name, text in model.prompts.items() if text is not None},
    )


def base_model_license(base_model: str | Path) -> str | None:
    """The licence in the base model's own card (a local folder's README.md, else the hub's); None if unknown."""
    from huggingface_hub import ModelCard

    local = Path(base_model) / CARD_FILE
    try:
        card = ModelCard.load(local) if local.is_file() else ModelCard.load(str(base_model))
    except Exception:  # offline, missing or unreadable card: the licence stays unknown, never guessed
        return None
    return card.data.license


def existing_provenance(path: str | Path) -> Provenance:
    """The provenance recorded in a saved model's card (empty when it has none or it is not ours)."""
    card_path = Path(path) / CARD_FILE
    return card_provenance(card_path.read_text(encoding="utf-8")) if card_path.is_file() else Provenance()


def card_provenance(text: str) -> Provenance:
    """The provenance a card's metadata records (empty for a card without metadata)."""
    from huggingface_hub import ModelCard

    data = ModelCard(text, ignore_metadata_errors=True).data.to_dict()
    lens = data.get("lens_embed") or {}
    base = data.get("base_model")
    return Provenance(
        model_id=lens.get("model_id"),
        base_model=base[0] if isinstance(base, list) and base else base,
        license=data.get("license"),
        training_datasets=list(data.get("datasets") or []),
        training_recipe=dict(lens.get("training_recipe") or {}),
    )


def record_base_model(model: SentenceTransformer, base_model: str | Path) -> None:
    """Note on the model (its ``model_card_data``) what it was made from and under which licence.

    A hub id is recorded as the card's ``base_model``; a local folder is not (the hub could not link
    it), but the licence in its card is still read.
    """
    model.model_card_data.license = base_model_license(base_model)
    model.model_card_data.base_model = None if Path(base_model).exists() else str(base_model)


def model_provenance(model: SentenceTransformer, model_id: str | None = None) -> dict[str, Any]:
    """Provenance of an in-memory model: the card it was loaded with, then what sentence-transformers'
    ``model_card_data`` knows now (base model, licence, and after training its datasets and settings)."""
    data = model.model_card_data
    recorded = card_provenance(model._model_card_text) if getattr(model, "_model_card_text", None) else Provenance()
    datasets = [str(d.get("id") or d.get("name")) for d in data.train_datasets if d.get("id") or d.get("name")]
    recipe = {key: str(value) for key, value in (data.non_default_hyperparameters or {}).items()}
    now = merge_provenance(
        recorded,
        model_id=model_id or data.model_id,
        base_model=data.base_model,
        license=data.license,
        training_datasets=datasets,
        training_recipe=recipe,
    )
    return dict(now.__dict__)


def merge_provenance(recorded: Provenance, **given: Any) -> Provenance:
    """Values given now win over recorded ones; None and empty values leave the recorded ones."""
    values = {key: value for key, value in given.items() if value}
    return Provenance(**{**recorded.__dict__, **values})


def load_eval_rows(results: str | Path, model_name: str | None = None, revision: str | None = None) -> list[EvalRow]:
    """Main scores of one model in an mteb results folder, read with mteb's own results loader.

    The model is picked by name and/or revision; with neither, the folder must hold exactly one model.

    Args:
        results: an mteb results folder (``RESULTS/results/<org__model>/<revision>/<Task>.json``).
        model_name: the model's mteb name (``org/model``).
        revision: the model revision (the folder name under the model).
    """
    from mteb.results import TaskResult

    from lens_embed.evaluation.runner import PROTOCOL_FILE

    root = Path(results)
    if not (root / "results").is_dir():
        raise FileNotFoundError(f"{root} is not an mteb results folder (no {root / 'results'})")
    folders = {folder: _identity(folder) for folder in sorted({p.parent for p in (root / "results").glob("*/*/*.json")})}
    candidates = [
        folder
        for folder, (name, rev) in folders.items()
        if (model_name is None or name == model_name) and (revision is None or rev == revision)
    ]
    if len(candidates) != 1:
        found = sorted(f"{name} (revision {rev})" for name, rev in folders.values())
        wanted = f"name={model_name!r} revision={revision!r}"
        raise ValueError(
            f"{root}: {len(candidates)} model results match {wanted}; the folder holds: {', '.join(found) or 'none'}"
        )
    files = [p for p in sorted(candidates[0].glob("*.json")) if p.name not in ("model_meta.json", PROTOCOL_FILE)]
    rows = [row for file in files for row in _rows(TaskResult.from_disk(file))]  # mteb's own result reader
    return sorted(rows, key=lambda r: (r.task_type, r.task))


def _identity(folder: Path) -> tuple[str, str]:
    """(model name, revision) of a results folder, as mteb reads them: model_meta.json, else the path."""
    meta = folder / "model_meta.json"
    data = json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}
    return str(data.get("name") or folder.parent.name.replace("__", "/")), str(data.get("revision") or folder.name)


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


def card_metadata(facts: ModelFacts, provenance: Provenance, rows: list[EvalRow], name: str) -> Any:
    """Hugging Face ``ModelCardData``: library, pipeline, base model, licence, tags, model-index."""
    from huggingface_hub import EvalResult, ModelCardData

    eval_results = [
        EvalResult(
            task_type=row.task_type,
            dataset_type=row.dataset,
            dataset_name=f"MTEB {row.task}",
            dataset_config=row.subset,
            dataset_split=row.split,
            dataset_revision=row.dataset_revision,
            metric_type=row.metric,
            metric_value=row.value,
        )
        for row in rows
    ]
    lens = {
        "n_clusters": facts.n_clusters,
        "hybrid": facts.hybrid,
        "bidirectional": facts.bidirectional,
        "model_id": provenance.model_id,
        "training_recipe": provenance.training_recipe or None,
    }
    return ModelCardData(
        library_name=LIBRARY_NAME,
        pipeline_tag=PIPELINE_TAG,
        base_model=provenance.base_model,
        license=provenance.license,
        language=["en"],
        tags=list(CARD_TAGS),
        datasets=provenance.training_datasets or None,
        model_name=name,
        eval_results=eval_results or None,
        lens_embed={key: value for key, value in lens.items() if value is not None},
    )


def _model_section(facts: ModelFacts, provenance: Provenance) -> str:
    kind = "decoder LLM" if facts.decoder else "encoder"
    attention = "bidirectional (causal mask removed; `is_causal: false` in config.json)" if facts.decoder else "bidirectional"
    hybrid = (
        f"yes: the L2-normalised {facts.dense_pooling}-pooled hidden state (weight {facts.dense_weight:g}) is "
        f"appended to the {facts.n_clusters} lexicon dimensions"
        if facts.hybrid
        else "no (lexicon dimensions only)"
    )
    rows = [
        ("K (vocabulary clusters = lexicon dimensions)", str(facts.n_clusters)),
        ("embedding dimension", str(facts.embedding_dimension)),
        ("backbone", f"{facts.backbone} ({kind})"),
        ("base model", f"`{provenance.base_model}`" if provenance.base_model else "not recorded"),
        ("attention", attention),
        ("hybrid (lexicon + dense)", hybrid),
        ("max sequence length", f"{facts.max_seq_length} tokens" if facts.max_seq_length else "the backbone's"),
        ("similarity", "cosine (embeddings are L2-normalised: dot product)"),
    ]
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    return f"""## Model

This is a **LENS** model ([Lei et al., ACL 2025]({PAPER_URL})): lexicon-based text embeddings from a
language model. The LM-head rows of the vocabulary are clustered into K centroids that replace the
LM head, so every embedding dimension is one cluster of similar tokens and can be named. A text's
embedding is the max over its pooled positions of `log(1 + relu(hidden @ centroids^T))`, L2-normalised.

| | |
| --- | --- |
{table}
"""


def _usage_section(facts: ModelFacts, model_id: str) -> str:
    named = "\n".join(
        f"| `{name}` | `{json.dumps(prompt)[1:-1]}` |" for name, prompt in sorted(facts.prompts.items())
    )
    return f"""## Usage

Queries carry an instruction in the LENS format `<instruct>{{instruction}}\\n<query>{{query}}`;
documents are embedded as their plain text. Symmetric tasks (STS, classification, clustering)
embed every text as an instructed query. The tokenizer adds BOS and exactly one EOS.

With [lens-embed](https://github.com/yibinlei/LENS) (its loader recognises the model's own code
and needs no `trust_remote_code`):

```python
import lens_embed

model = lens_embed.load_lens_model("{model_id}")
queries = lens_embed.encode(model, ["what is rba"], query=True, instruction="{EXAMPLE_INSTRUCTION}")
documents = lens_embed.encode(model, ["Since 2007, the RBA's outstanding reputation has been affected ..."])
print(queries @ documents.T)
```

With sentence-transformers alone (the modules' code ships in this repository, hence `trust_remote_code=True`):

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("{model_id}", trust_remote_code=True)
queries = model.encode_query(["what is rba"], prompt_name="web_search")  # a named instruction
queries = model.encode_query(["what is rba"], prompt="<instruct>{EXAMPLE_INSTRUCTION}\\n<query>")
documents = model.encode_document(["Since 2007, the RBA's outstanding reputation has been affected ..."])
print(model.similarity(queries, documents))
```

Named instructions (`prompt_name=`; `encode_query` uses `query` by default):

| name | prompt |
| --- | --- |
{named}
"""


def _limits_section(facts: ModelFacts) -> str:
    length = f"{facts.max_seq_length} tokens" if facts.max_seq_length else "the maximum length"
    return f"""## Intended use and limits

Intended for English retrieval, semantic similarity, classification and clustering, and wherever
an embedding must be explainable: each dimension names a cluster of tokens (`lens-embed explain`).
Limits: texts longer than {length} are truncated (EOS kept); queries need an instruction that
describes the task, and scores drop without one; the model was evaluated on English only; a
{facts.embedding_dimension}-dimensional float vector per text costs as much to store as a dense
embedding of that size. Retrieval quality depends on the training below: an untrained LENS
construction (clustered head, no contrastive fine-tuning) embeds well below a trained one.
"""


def _training_section(provenance: Provenance) -> str:
    if not provenance.training_datasets and not provenance.training_recipe:
        return """## Training

No training is recorded for this model: it is the LENS construction (clustered head on the base
model) or a converted checkpoint; see the base model's card for its training.
"""
    data = ", ".join(f"`{name}`" for name in provenance.training_datasets) or "not recorded"
    recipe = "\n".join(f"| {key} | {value} |" for key, value in sorted(provenance.training_recipe.items()))
    table = f"\n| setting | value |\n| --- | --- |\n{recipe}\n" if recipe else ""
    return f"""## Training

Contrastive fine-tuning (InfoNCE over in-batch and hard negatives, LoRA, the clustered head frozen).
Data: {data}.
{table}"""


def _evaluation_section(rows: list[EvalRow]) -> str:
    if not rows:
        return """## Evaluation

No results recorded yet: run `lens-embed evaluate mteb --model MODEL --output RESULTS`, then
`lens-embed card MODEL --results RESULTS`.
"""
    table = "\n".join(
        f"| {row.task} | {row.task_type} | {row.split} | {row.subset} | {row.metric} | {row.value:.2f} |" for row in rows
    )
    mean = sum(row.value for row in rows) / len(rows)
    return f"""## Evaluation

MTEB main scores (x100), from the mteb results folder this card was written from:

| task | type | split | subset | metric | score |
| --- | --- | --- | --- | --- | ---: |
{table}

Mean over the {len(rows)} rows above: {mean:.2f}.
"""


def render_card(
    model: SentenceTransformer, provenance: Provenance, rows: list[EvalRow] | None = None, name: str | None = None
) -> ModelCard:
    """The complete card (metadata and text) of a loaded LENS model.

    Args:
        model: the LENS model.
        provenance: base model, licence, training data and recipe, hub id.
        rows: evaluation rows (``load_eval_rows``); none gives a card without a results table.
        name: the card's title (default: the hub id, else "LENS model").
    """
    from huggingface_hub import ModelCard

    facts = model_facts(model)
    rows = rows or []
    model_id = provenance.model_id or "path/to/this/model"
    title = name or provenance.model_id or "LENS model"
    metadata = card_metadata(facts, provenance, rows, title)
    hybrid = f" + {facts.embedding_dimension - facts.n_clusters}-d dense (hybrid)" if facts.hybrid else ""
    body = "\n".join(
        [
            f"# {title}\n",
            f"LENS lexicon-based embeddings: {facts.n_clusters} dimensions{hybrid} from a bidirectional {facts.backbone}.\n",
            _model_section(facts, provenance),
            _usage_section(facts, model_id),
            _limits_section(facts),
            _training_section(provenance),
            _evaluation_section(rows),
            f"## Licence\n\n{provenance.license or 'Not recorded: the base model licence applies.'}\n",
            f"## Citation\n\n```bibtex\n{LENS_CITATION}\n```\n",
        ]
    )
    return ModelCard(f"---\n{metadata.to_yaml()}\n---\n\n{body}")


def write_card(
    model: SentenceTransformer,
    path: str | Path,
    *,
    results: str | Path | None = None,
    results_model_name: str | None = None,
    results_revision: str | None = None,
    **provenance: Any,
) -> Path:
    """Write (or rewrite) ``README.md`` of a saved LENS model; provenance already in its card is kept.

    Args:
        model: the LENS model saved at ``path``.
        path: the model folder.
        results: an mteb results folder to fill the evaluation table and ``model-index`` from.
        results_model_name: which model of ``results`` (default: the one whose revision is this folder's).
        results_revision: which revision of it (default: this folder's content revision when no name is given).
        **provenance: ``Provenance`` fields known now (``base_model``, ``license``, ``model_id``,
            ``training_datasets``, ``training_recipe``); with a ``base_model`` and no ``license`` the
            licence is read from the base model's card.
    """
    folder = Path(path)
    merged = merge_provenance(existing_provenance(folder), **provenance)
    if merged.base_model and not merged.license:
        merged = merge_provenance(merged, license=base_model_license(merged.base_model))
    rows: list[EvalRow] = []
    if results is not None:
        if results_model_name is None and results_revision is None:
            from lens_embed.evaluation.encoders import model_revision

            results_revision = model_revision(folder)
        rows = load_eval_rows(results, results_model_name, results_revision)
    card = render_card(model, merged, rows)
    target = folder / CARD_FILE
    atomic_write(target, lambda stream: stream.write(str(card).encode("utf-8")))
    return target


def add_card_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``lens-embed card MODEL [--results RESULTS]`` (nothing heavy imported here)."""
    parser = subparsers.add_parser("card", help="(re)write the model card (README.md) of a saved LENS model")
    parser.add_argument("model", help="LENS model folder")
    parser.add_argument("--results", default=None, help="mteb results folder for the evaluation table and model-index")
    parser.add_argument("--results-name", default=None, help="the model's name in RESULTS (default: matched by revision)")
    parser.add_argument("--model-id", default=None, help="hub id the card's usage examples load")
    parser.add_argument("--base-model", default=None, help="hub id of the base model (its licence is read from its card)")
    parser.add_argument("--license", default=None, help="licence id (default: the base model's)")
    parser.set_defaults(func=_run_card)


def _run_card(args: argparse.Namespace) -> None:
    from lens_embed.model import load_lens_model

    model = load_lens_model(args.model)
    target = write_card(
        model,
        args.model,
        results=args.results,
        results_model_name=args.results_name,
        model_id=args.model_id,
        base_model=args.base_model,
        license=args.license,
    )
    print(f"wrote {target}")
