"""The LENS model card: the README.md written beside every LENS model lens-embed saves.

sentence-transformers' generic card tells the reader to load ``"sentence_transformers_model_id"``
with a plain ``pip install``, neither of which works for LENS. This card says what the model is,
how to load it both ways, how queries and documents are embedded, what it was trained on, how it
scored (from an mteb results folder), under which licence, and how to cite it. Its metadata is
Hugging Face's own ``ModelCardData`` (``model-index`` included when there are results), so the hub
reads it like any other card.

Why not sentence-transformers' own mechanism (a ``SentenceTransformerModelCardData`` subclass as the
model's ``model_card_data_class``, rendered by ``generate_model_card(model)`` through a template): it
renders from a live, registered model, and its ``to_dict`` runs that model (the usage snippet encodes
example texts), asks the hub for a base model, and fills the table from sentence-transformers' evaluators
(``eval_results_dict``). This card is written where no model runs: for the SparseEncoder folder (another
``model_type``, from the LENS folder's facts), by ``lens-embed card`` with rows from an mteb results
folder, and beside a saved folder whose recorded provenance is kept; and sentence-transformers reuses a
loaded card verbatim when a model was not trained, which would keep stale facts after ``set-pooling`` or
a conversion. The metadata is the same ``huggingface_hub.ModelCardData`` that class extends.

This is the saved-folder layer: the card is rendered from plain data it is given (:class:`ModelFacts`
read off a model by :meth:`lens_embed.models.model.LensSentenceTransformer.facts`, :class:`Provenance`, and
:class:`EvalRow` s read from an mteb results folder by
:func:`lens_embed.evaluation.results.load_eval_rows`); it imports no model, evaluation or mteb.
``lens-embed card MODEL [--results RESULTS]`` (:mod:`lens_embed.commands`) rewrites the card of a saved
model; provenance recorded in the existing card (base model, licence, training) is kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from lens_embed.base.citation import LENS_CITATION
from lens_embed.base.storage import atomic_write

CARD_FILE = "README.md"
LIBRARY_NAME = "sentence-transformers"
PIPELINE_TAG = "sentence-similarity"
CARD_TAGS = [
    "sentence-transformers",
    "sentence-similarity",
    "feature-extraction",
    "lens",
    "lexicon-based",
    "mteb",
]
SPARSE_TAGS = ["sparse-encoder", "sparse"]
SPARSE_PIPELINE_TAG = "feature-extraction"  # what sentence-transformers' own SparseEncoder cards declare
SPARSE_REVISION = "sparse"
"""The hub branch a LENS model's SparseEncoder folder goes to, beside the LENS folder on ``main``."""
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
    truncation_keeps_eos: bool = True
    """False for converted released checkpoints: an over-long text loses its EOS, as in the authors'
    evaluation."""

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


def base_model_license(base_model: str | Path) -> str | None:
    """The licence in the base model's own card (a local folder's README.md, else the hub's); None if
    unknown."""
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


def merge_provenance(recorded: Provenance, **given: Any) -> Provenance:
    """Values given now win over recorded ones; None and empty values leave the recorded ones."""
    values = {key: value for key, value in given.items() if value}
    return Provenance(**{**recorded.__dict__, **values})


def card_metadata(
    facts: ModelFacts, provenance: Provenance, rows: list[EvalRow], name: str, sparse: bool = False
) -> ModelCardData:
    """Hugging Face ``ModelCardData``: library, pipeline, base model, licence, tags, model-index (``sparse``:
    of the model's SparseEncoder folder)."""
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
        pipeline_tag=SPARSE_PIPELINE_TAG if sparse else PIPELINE_TAG,
        base_model=provenance.base_model,
        license=provenance.license,
        language=["en"],
        tags=[*CARD_TAGS, *SPARSE_TAGS] if sparse else list(CARD_TAGS),
        datasets=provenance.training_datasets or None,
        model_name=name,
        eval_results=eval_results or None,
        lens_embed={key: value for key, value in lens.items() if value is not None},
    )


def _model_section(facts: ModelFacts, provenance: Provenance) -> str:
    kind = "decoder LLM" if facts.decoder else "encoder"
    attention = (
        "bidirectional (causal mask removed; `is_causal: false` in config.json)"
        if facts.decoder
        else "bidirectional"
    )
    hybrid = (
        f"yes: the L2-normalised {facts.dense_pooling}-pooled hidden state "
        f"(weight {facts.dense_weight:g}) is "
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
        (
            "max sequence length",
            f"{facts.max_seq_length} tokens" if facts.max_seq_length else "the backbone's",
        ),
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


def _sparse_usage_section(facts: ModelFacts, model_id: str | None) -> str:
    where = f'"{model_id}", revision="{SPARSE_REVISION}"' if model_id else '"path/to/this/folder"'
    return f"""## Usage as a SparseEncoder

This folder is the LENS model in sentence-transformers' sparse stack: the same modules, weights and
embeddings, loaded by `SparseEncoder` (`model_type: SparseEncoder`). Each of the {facts.n_clusters}
dimensions is one cluster of vocabulary tokens, and `decode` names it by its cluster's first tokens
(`cluster_names.json`), not by a vocabulary id. The LENS folder itself loads with `SentenceTransformer`
(on the hub: the main revision; this folder goes to the `{SPARSE_REVISION}` branch, whose files the hub
stores once).

```python
from sentence_transformers import SparseEncoder

model = SparseEncoder({where}, trust_remote_code=True)
queries = model.encode_query(["what is rba"], prompt_name="web_search")  # sparse tensors
documents = model.encode_document(["Since 2007, the RBA's outstanding reputation has been affected ..."])
print(model.similarity(queries, documents))
print(model.decode(queries[0], top_k=5))  # [(cluster name, weight), ...]
print(model.sparsity(documents))
pruned = model.encode_document(["..."], max_active_dims=256)  # each vector's 256 largest weights
```

Queries and documents are embedded exactly as by the LENS model: queries with an instruction in the
LENS format `<instruct>{{instruction}}\\n<query>{{query}}`, documents as their plain text.
"""


def _limits_section(facts: ModelFacts) -> str:
    length = f"{facts.max_seq_length} tokens" if facts.max_seq_length else "the maximum length"
    eos = (
        "EOS kept, as in training"
        if facts.truncation_keeps_eos
        else "the EOS is cut off with the rest, as in the authors' evaluation of the released checkpoints"
    )
    return f"""## Intended use and limits

Intended for English retrieval, semantic similarity, classification and clustering, and wherever
an embedding must be explainable: each dimension names a cluster of tokens (`lens-embed explain`).
Limits: texts longer than {length} are truncated ({eos}); queries need an instruction that
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
        f"| {row.task} | {row.task_type} | {row.split} | {row.subset} | {row.metric} | {row.value:.2f} |"
        for row in rows
    )
    mean = sum(row.value for row in rows) / len(rows)
    return f"""## Evaluation

MTEB main scores (x100), from the mteb results folder this card was written from:

| task | type | split | subset | metric | score |
| --- | --- | --- | --- | --- | ---: |
{table}

Mean over the {len(rows)} rows above: {mean:.2f}.
"""


_SPARSE_EVALUATION = """## Evaluation

The embeddings are the LENS model's own (the same values, as sparse tensors): its card holds the scores.
"""


def render_card(
    facts: ModelFacts,
    provenance: Provenance,
    rows: list[EvalRow] | None = None,
    name: str | None = None,
    sparse: bool = False,
) -> ModelCard:
    """The complete card (metadata and text) of a LENS model.

    Args:
        facts: what the model is (:meth:`lens_embed.models.model.LensSentenceTransformer.facts`).
        provenance: base model, licence, training data and recipe, hub id.
        rows: evaluation rows (:func:`lens_embed.evaluation.results.load_eval_rows`); none gives a card
            without a results table.
        name: the card's title (default: the hub id, else "LENS model").
        sparse: the card of the model's SparseEncoder folder (:mod:`lens_embed.models.sparse`): its usage is
            ``SparseEncoder``'s.
    """
    rows = rows or []
    model_id = provenance.model_id or "path/to/this/model"
    title = name or provenance.model_id or "LENS model"
    metadata = card_metadata(facts, provenance, rows, title, sparse=sparse)
    hybrid = f" + {facts.embedding_dimension - facts.n_clusters}-d dense (hybrid)" if facts.hybrid else ""
    usage = _sparse_usage_section(facts, provenance.model_id) if sparse else _usage_section(facts, model_id)
    body = "\n".join(
        [
            f"# {title}{' (SparseEncoder)' if sparse else ''}\n",
            f"LENS lexicon-based embeddings: {facts.n_clusters} dimensions{hybrid} "
            f"from a bidirectional {facts.backbone}.\n",
            _model_section(facts, provenance),
            usage,
            _limits_section(facts),
            _training_section(provenance),
            _evaluation_section(rows) if not sparse else _SPARSE_EVALUATION,
            f"## Licence\n\n{provenance.license or 'Not recorded: the base model licence applies.'}\n",
            f"## Citation\n\n```bibtex\n{LENS_CITATION}\n```\n",
        ]
    )
    return ModelCard(f"---\n{metadata.to_yaml()}\n---\n\n{body}")


def write_card(
    path: str | Path, facts: ModelFacts, *, rows: list[EvalRow] | None = None, **provenance: Any
) -> Path:
    """Write (or rewrite) ``README.md`` of a saved LENS model; provenance already in its card is kept.

    Args:
        path: the model folder.
        facts: what the model is (:meth:`lens_embed.models.model.LensSentenceTransformer.facts`).
        rows: evaluation rows for the evaluation table and ``model-index`` (none: no results table).
        **provenance: ``Provenance`` fields known now (``base_model``, ``license``, ``model_id``,
            ``training_datasets``, ``training_recipe``); with a ``base_model`` and no ``license`` the
            licence is read from the base model's card.
    """
    folder = Path(path)
    merged = merge_provenance(existing_provenance(folder), **provenance)
    if merged.base_model and not merged.license:
        merged = merge_provenance(merged, license=base_model_license(merged.base_model))
    card = render_card(facts, merged, rows)
    target = folder / CARD_FILE
    atomic_write(target, lambda stream: stream.write(str(card).encode("utf-8")))
    return target
