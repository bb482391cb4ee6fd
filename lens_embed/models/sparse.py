"""LENS in sentence-transformers' sparse stack: a LENS model's SparseEncoder folder.

sentence-transformers loads a folder as the ``model_type`` of its ``config_sentence_transformers.json``
says, one value that every model class reads. A LENS folder says ``SentenceTransformer``, and
``SparseEncoder`` "converts" such a folder by appending a randomly initialised ``SparseAutoEncoder``
(4 x K dimensions of noise, with no error); a folder that says ``SparseEncoder`` is rebuilt by
``SentenceTransformer`` as a plain pooled backbone. The folder's modules cannot change either path,
so one folder cannot load correctly as both classes. A LENS model therefore gets a second folder for
the sparse stack, written by :func:`write_sparse_encoder` (``lens-embed sparse-encoder MODEL OUT``):

* ``model_type: "SparseEncoder"``, with the LENS folder's prompts and similarity (and, if asked, a
  default ``max_active_dims``);
* the LENS modules (``modeling_lens.py``), the first one a
  :class:`~lens_embed.modules.LensSparseTransformer`: ``SparseEncoder(OUT, trust_remote_code=True)``
  gives the LENS embeddings as sparse tensors of dimension K, and ``decode`` names each dimension by its
  cluster's tokens (:func:`cluster_names`, saved as ``cluster_names.json``), since it reads names from
  ``model.tokenizer.convert_ids_to_tokens``;
* the LENS folder's weights, tokenizer and configs as hard links (a copy where the file system has
  none), so the folder costs no second copy of the weights. Saving either model first gives its own
  folder private copies (:func:`lens_embed.modules.unshare_files`), so a save never writes through into
  the other. On the hub the folder goes to a branch of the LENS repository
  (:data:`lens_embed.models.card.SPARSE_REVISION`), whose files the hub stores once.

lens-embed's own loader loads SentenceTransformer folders only and refuses this one by name
(:func:`lens_embed.models.loading.load_lens_model`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from lens_embed.base.defaults import CLUSTER_NAME_TOKENS
from lens_embed.base.storage import atomic_write, is_released_name, staged_directory
from lens_embed.models.build import ensure_output_dir
from lens_embed.models.card import CARD_FILE, existing_provenance, render_card
from lens_embed.models.convert import converted_release_path
from lens_embed.models.loading import load_lens_model
from lens_embed.models.model import LensSentenceTransformer
from lens_embed.models.pooling import checked_max_active_dims
from lens_embed.models.portable import make_portable
from lens_embed.models.safety import MODELING_FILE, Manifest
from lens_embed.modules import CLUSTER_NAMES_FILE, LensSparseTransformer, save_cluster_names

SPARSE_MODEL_TYPE = "SparseEncoder"
SETTINGS_FILE = "config_sentence_transformers.json"
MODULES_FILE = "modules.json"
NAME_SEPARATOR = "|"
# Written for the SparseEncoder folder itself, never shared with the LENS folder.
OWN_FILES = frozenset({MODULES_FILE, SETTINGS_FILE, MODELING_FILE, CARD_FILE, CLUSTER_NAMES_FILE})
logger = logging.getLogger(__name__)


def cluster_names(model: LensSentenceTransformer, tokens: int = CLUSTER_NAME_TOKENS) -> list[str]:
    """One name per dimension of a LENS model: up to ``tokens`` readable member tokens of its cluster
    (:meth:`~lens_embed.models.model.LensSentenceTransformer.cluster_tokens`, token-id order) joined by ``|``.

    Names are unique, as the sparse stack's engines key documents by them (``decode`` output): a
    cluster whose name an earlier cluster already has, or with no readable token, gets ``#<index>``
    appended.

    Args:
        model: a LENS model.
        tokens: member tokens per name (>= 1).
    """
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ValueError(f"tokens per cluster name must be a positive integer, got {tokens!r}")
    names: list[str] = []
    seen: set[str] = set()
    for index in range(model.n_clusters):
        name = NAME_SEPARATOR.join(model.cluster_tokens(index, tokens))
        while not name or name in seen:
            name = f"{name}#{index}"
        seen.add(name)
        names.append(name)
    return names


def write_sparse_encoder(
    model: str | Path,
    output: str | Path,
    *,
    max_active_dims: int | None = None,
    tokens: int = CLUSTER_NAME_TOKENS,
    overwrite: bool = False,
    **load_kwargs: Any,
) -> Path:
    """Write the SparseEncoder folder of a LENS model: ``SparseEncoder(output, trust_remote_code=True)``
    then embeds exactly as ``SentenceTransformer(model, trust_remote_code=True)``, as sparse tensors.

    The model is loaded once through :func:`lens_embed.models.loading.load_lens_model` (every check of a LENS
    folder) to name its clusters. The folder is staged and renamed into place: an interruption leaves
    no output, or the previous one whole.

    Args:
        model: a LENS model folder saved by lens-embed (any version), or a released name (converted
            once into the cache).
        output: the folder to write; refused if it overlaps ``model``.
        max_active_dims: the folder's default for ``SparseEncoder.encode`` (each vector keeps its N
            largest weights); None keeps every active dimension. ``encode(..., max_active_dims=N)``
            overrides it per call.
        tokens: member tokens in each cluster's name (:func:`cluster_names`).
        overwrite: replace a non-empty ``output``.
        **load_kwargs: passed to :func:`lens_embed.models.loading.load_lens_model` (``dtype``,
            ``attn_implementation``): how the model is loaded to be checked, not what is written.

    Returns:
        The written folder.

    Raises:
        ValueError: not a LENS model, a hybrid (its dense part has no clusters), a bad option, or an
            output overlapping the model.
        FileExistsError: a non-empty ``output`` without ``overwrite``.
    """
    if max_active_dims is not None:
        max_active_dims = checked_max_active_dims(max_active_dims)
    source = converted_release_path(str(model)) if is_released_name(model) else Path(model)
    if not source.is_dir():
        raise FileNotFoundError(f"model directory not found: {source} (a local LENS folder is needed)")
    ensure_output_dir(output, overwrite, source=source)
    lens = load_lens_model(source, device="cpu", **load_kwargs)
    pooling = lens.lexicon()  # a clear error for a model that is not LENS
    if pooling.dense_pooling is not None:
        raise ValueError(
            f"{source} is a hybrid LENS model ({pooling.n_clusters} lexicon dimensions + a dense part): its "
            "dense dimensions are neither sparse nor clusters; a SparseEncoder folder is written for "
            "lexicon-only models"
        )
    names = cluster_names(lens, tokens)
    facts = lens.facts()
    files = Manifest(source)
    entries = files.module_entries()
    first = entries[0]["path"] if entries else ""
    settings = (files.json(SETTINGS_FILE) or ({}, None))[0]
    settings = {**settings, "model_type": SPARSE_MODEL_TYPE}
    if max_active_dims is not None:
        settings["max_active_dims"] = max_active_dims
    sparse_type = f"{LensSparseTransformer.__module__}.{LensSparseTransformer.__qualname__}"
    modules = [{**entry, "type": sparse_type} if index == 0 else entry for index, entry in enumerate(entries)]
    with staged_directory(output, replace=overwrite) as staging:
        copied = share_files(source, staging, [str(entry["path"]) for entry in entries])
        _write_json(staging / MODULES_FILE, modules)
        make_portable(staging)  # modeling_lens.py, and modules.json naming its classes
        _write_json(staging / SETTINGS_FILE, settings)
        save_cluster_names(str(staging / first), names)
        card = render_card(facts, existing_provenance(source), sparse=True)
        atomic_write(staging / CARD_FILE, lambda stream: stream.write(str(card).encode("utf-8")))
    if copied:
        logger.warning(
            "%s: %d file(s) could not be hard-linked to %s and were copied", output, len(copied), source
        )
    return Path(output)


def share_files(source: Path, target: Path, module_paths: list[str]) -> list[Path]:
    """Hard-link into ``target`` the files of ``source``'s modules (its root files and every module
    folder), except what the SparseEncoder folder writes for itself (:data:`OWN_FILES`) and hidden
    files; a file that cannot be linked (another file system) is copied.

    Returns:
        The files that were copied rather than linked.
    """
    files = [path for path in source.iterdir() if path.is_file() and path.name not in OWN_FILES]
    for folder in dict.fromkeys(path for path in module_paths if path):
        files += [path for path in (source / folder).rglob("*") if path.is_file()]
    copied: list[Path] = []
    for path in files:
        relative = path.relative_to(source)
        if any(part.startswith(".") for part in relative.parts):
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, destination)
        except OSError:
            shutil.copy2(path, destination)
            copied.append(path)
    return copied


def _write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda stream: stream.write(json.dumps(data, indent=2).encode("utf-8")))
