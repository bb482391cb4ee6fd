"""Using LENS models: the one loader (with its safety and integrity checks), encoding, inspection.

Making models lives below this module (:mod:`lens_embed.build`, :mod:`lens_embed.convert`); every
entry point loads a model through :func:`load_lens_model` and embeds through :func:`encode`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Module, Transformer
from sentence_transformers.util import import_from_string
from transformers import AutoConfig

from lens_embed import modules as lens_modules
from lens_embed.backbone import (
    CheckpointError,
    expected_shapes,
    is_decoder_config,
    stored_shapes,
    tensor_names,
    weight_files,
)
from lens_embed.convert import converted_release_path
from lens_embed.modules import LexiconPooling, validate_texts
from lens_embed.pooling import checked_max_active_dims, keep_max_active_dims
from lens_embed.portable import MODELING_MODULE, LensSentenceTransformer, own_code_types
from lens_embed.prompts import query_prompt
from lens_embed.safety import read_model_json, read_modules, refuse_code_references
from lens_embed.storage import is_released_name

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")
# lens-embed's own sentence-transformers modules, by the type that modules.json records for them:
# resolved here, so sentence-transformers imports no code for them and its remote-code gate stays shut.
LENS_MODULE_CLASSES: dict[str, type[Module]] = {
    f"{cls.__module__}.{cls.__qualname__}": cls
    for cls in vars(lens_modules).values()
    if isinstance(cls, type) and issubclass(cls, Module) and cls.__module__ == lens_modules.__name__
}
# JSON files sentence-transformers reads besides each module's own config (``Module.config_file_name``):
# the model's settings at the root, and the transformers config of a Transformer module's folder.
ROOT_JSON_FILES = ("config_sentence_transformers.json",)
MODULE_JSON_FILES = ("config.json",)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """A torch dtype from its name ("float32", "bfloat16", "float16") or itself."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)} or a torch.dtype, got {dtype!r}")
    return DTYPES[dtype]


def load_lens_model(
    name_or_path: str | Path,
    device: str | None = None,
    *,
    trust_remote_code: bool = False,
    dtype: str | torch.dtype | None = None,
    attn_implementation: str | None = None,
    **kwargs: Any,
) -> SentenceTransformer:
    """Load a LENS model (or any sentence-transformers model) safely and check what was loaded.

    A released checkpoint name (``yibinlei/LENS-d4000``, ``-d8000``) is converted once into the
    cache. lens-embed's own module classes are resolved here; a model that asks for any other code
    (module types outside sentence-transformers and lens-embed, ``auto_map`` entries, tokenizer
    classes transformers does not define) is refused unless ``trust_remote_code=True``. Before
    anything is built, ``modules.json``, the JSON configs and every weight file the library's modules
    will read are checked; a damaged, truncated or pickled weight file, bad JSON, a malformed
    ``modules.json`` or a module type that does not exist raises a ValueError (CheckpointError for
    weights) naming the file, and no pickle is ever unpickled. A LENS model must have every backbone
    tensor stored, of its configured shape and finite, finite float32 centroids of its configured
    shape and, for a decoder, bidirectional attention; otherwise the error names the file.

    Args:
        name_or_path: A lens-embed or sentence-transformers model folder, a hub id, or a released name.
        device: Device to load onto (e.g. "cuda", "cpu"); None lets sentence-transformers choose.
        trust_remote_code: Allow the model to import code of its own (only for models you trust).
        dtype: Backbone dtype: "float32", "bfloat16", "float16" or a torch.dtype; None keeps the saved one.
        attn_implementation: "eager", "sdpa", "flash_attention_2" or None for transformers' choice.
        **kwargs: Passed on to ``SentenceTransformer`` (e.g. ``model_kwargs``, ``cache_folder``, ``revision``).

    Returns:
        The loaded ``SentenceTransformer``.
    """
    source = str(converted_release_path(str(name_or_path)) if is_released_name(name_or_path) else name_or_path)
    path = Path(source)
    if path.is_absolute() or source.startswith(".") or path.exists():
        if not path.is_dir():
            raise FileNotFoundError(f"model directory not found: {path}")
        if not (path / "modules.json").is_file():
            raise ValueError(
                f"{path} is not a sentence-transformers or lens-embed model (no modules.json); "
                "build one with `lens-embed build` or convert a released checkpoint with `lens-embed convert`"
            )
    hub_kwargs = {
        "revision": kwargs.get("revision"),
        "token": kwargs.get("token"),
        "cache_dir": kwargs.get("cache_folder"),
        "local_files_only": kwargs.get("local_files_only", False),
    }
    if not trust_remote_code:
        refuse_code_references(source, **hub_kwargs)
    # sentence-transformers' own way to load with known classes; other module types still meet its gate.
    # A folder's modeling_lens.py resolves to the installed classes when it is exactly their code.
    module_classes = {**LENS_MODULE_CLASSES, **own_code_types(source, **hub_kwargs)}
    check_model_files(source, module_classes, hub_kwargs)
    model_kwargs = dict(kwargs.pop("model_kwargs", None) or {})
    if dtype is not None:
        model_kwargs["dtype"] = resolve_dtype(dtype)
    if attn_implementation is not None:
        if attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {attn_implementation!r}")
        model_kwargs["attn_implementation"] = attn_implementation
    if model_kwargs:
        kwargs["model_kwargs"] = model_kwargs
    # Private: SentenceTransformer(...) has no public argument that maps modules.json types to classes.
    try:
        model = LensSentenceTransformer._load_with_module_classes(
            source, module_classes, device=device, trust_remote_code=trust_remote_code, **kwargs
        )
    except RuntimeError as error:  # transformers' "size mismatch" names neither file nor tensor
        mismatch = shape_mismatch(source, hub_kwargs)
        if mismatch is None:
            raise
        raise mismatch from error
    if is_lens_model(model):
        lexicon_pooling(model).float()  # a dtype casts the whole model; the frozen head stays float32
        check_lens_model(model, source, hub_kwargs)
    return model


def module_folders(source: str, hub_kwargs: dict[str, Any]) -> dict[str, str]:
    """Module name -> its subfolder, as ``modules.json`` records them."""
    loaded = read_modules(source, **hub_kwargs)
    entries = loaded[0] if loaded is not None else []
    return {entry["name"]: entry["path"] for entry in entries}


def check_model_files(source: str, module_classes: dict[str, type[Module]], hub_kwargs: dict[str, Any]) -> None:
    """Before anything is built: every file that the library's modules will read is readable, each error naming it.

    The JSON configs parse; each module type of sentence-transformers or lens-embed exists (so a
    typo is not reported as an import traceback or as remote code); every weight file of those
    modules opens (safetensors headers, ``.bin`` files with ``weights_only=True``: nothing is
    unpickled). Folders of other module types, which load only under ``trust_remote_code``, are
    left to their own code.

    Raises:
        ValueError: bad JSON, a malformed ``modules.json`` or a module type that does not exist.
        CheckpointError: a weight file that is damaged, truncated or not a plain state dict.
    """
    for filename in ROOT_JSON_FILES:
        read_model_json(source, filename, **hub_kwargs)
    loaded = read_modules(source, **hub_kwargs)
    entries, location = loaded if loaded is not None else ([], "")
    for entry in entries:
        module_class = library_module_class(entry["type"], module_classes, location)
        if module_class is None:
            continue
        for filename in dict.fromkeys([getattr(module_class, "config_file_name", "config.json"), *MODULE_JSON_FILES]):
            read_model_json(source, filename, entry["path"], **hub_kwargs)
        stored_shapes(weight_files(source, entry["path"], **hub_kwargs))


def library_module_class(module_type: str, module_classes: dict[str, type[Module]], location: str) -> type[Module] | None:
    """The class of a ``modules.json`` type that is library code (lens-embed's or sentence-transformers'),
    None for any other type; a ValueError naming ``location`` when it claims to be library code but no such class exists."""
    if module_type in module_classes:
        return module_classes[module_type]
    if module_type.startswith("lens_embed."):
        raise ValueError(
            f"{location}: module type {module_type!r} is not a lens-embed module "
            f"(lens-embed has {', '.join(sorted(LENS_MODULE_CLASSES))})"
        )
    if not module_type.startswith("sentence_transformers."):
        return None
    try:
        return import_from_string(module_type)  # sentence-transformers' own resolution of its types: library code only
    except ImportError as error:
        raise ValueError(
            f"{location}: module type {module_type!r} does not exist in sentence-transformers "
            f"{sentence_transformers.__version__} ({error})"
        ) from error


def shape_mismatch(source: str, hub_kwargs: dict[str, Any]) -> CheckpointError | None:
    """After a failed load: the first stored tensor whose shape its folder's ``config.json`` contradicts,
    naming the weight file, the tensor and both shapes; None when the files show no such tensor."""
    for subfolder in dict.fromkeys(["", *module_folders(source, hub_kwargs).values()]):
        try:
            config = AutoConfig.from_pretrained(source, subfolder=subfolder, **hub_kwargs)
            expected = expected_shapes(config)
        except (OSError, ValueError, KeyError):  # no transformers config here (a head, a pooling)
            continue
        stored = stored_shapes(weight_files(source, subfolder, **hub_kwargs))
        for name, shape in expected.items():
            if name in stored and stored[name][1] != shape:
                file, found = stored[name]
                return CheckpointError(
                    f"{file}: tensor {name} has shape {list(found)}, but "
                    f"{Path(source, subfolder, 'config.json')} makes it {list(shape)}"
                )
    return None


def check_lens_model(model: SentenceTransformer, source: str, hub_kwargs: dict[str, Any]) -> None:
    """Refuse a LENS model that would embed wrongly without saying so; every error names the file.

    ``hub_kwargs`` locate the model's files on the hub as the load did (revision, token, cache).
    """
    folders = module_folders(source, hub_kwargs)
    pooling = lexicon_pooling(model)
    for name, module in model.named_children():
        if isinstance(module, Transformer):
            check_backbone(module, source, folders.get(name, ""), hub_kwargs)
            hidden_size = module.auto_model.config.hidden_size
            if pooling.hidden_size != hidden_size:
                raise CheckpointError(
                    f"{source}: the LENS head reads hidden size {pooling.hidden_size} but the backbone has {hidden_size}"
                )
        elif isinstance(module, LexiconPooling):
            subfolder = folders.get(name, "")
            files = weight_files(source, subfolder, **hub_kwargs)
            check_head(module, files[0] if files else Path(source, subfolder, "model.safetensors"))


def check_backbone(module: Transformer, source: str, subfolder: str, hub_kwargs: dict[str, Any]) -> None:
    """Every backbone tensor stored and finite; a decoder saved as bidirectional."""
    backbone = module.auto_model
    if is_decoder_config(backbone.config):
        loaded = read_model_json(source, "config.json", subfolder, **hub_kwargs)
        saved, config_file = loaded if loaded is not None else ({}, Path(source, subfolder, "config.json"))
        is_causal = saved.get("is_causal", "absent, so causal")
        if is_causal is not False or getattr(backbone.config, "is_causal", True) is not False:
            raise CheckpointError(
                f"{config_file}: a LENS decoder must be bidirectional (is_causal: false), got is_causal: {is_causal}"
            )
    files = weight_files(source, subfolder, **hub_kwargs)
    if not files:
        raise CheckpointError(f"no backbone weight files in {Path(source, subfolder)}")
    stored = tensor_names(files)
    tied = set(getattr(backbone, "all_tied_weights_keys", None) or {})
    missing = sorted(set(backbone.state_dict()) - stored - tied)
    if missing:
        raise CheckpointError(
            f"{', '.join(map(str, files))} lack {len(missing)} backbone tensor(s), which would be random: "
            + ", ".join(missing[:10])
        )
    for name, tensor in backbone.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            holder = next((file for file in files if name in tensor_names([file])), files[0])
            raise CheckpointError(f"{holder}: backbone tensor {name} holds NaN or infinite values")


def check_head(pooling: LexiconPooling, file: Path) -> None:
    """Centroids finite, float32, of the configured [K, H] shape; every token mapped to a real cluster."""
    centroids = pooling.centroids
    expected = (pooling.n_clusters, pooling.hidden_size)
    if tuple(centroids.shape) != expected or centroids.dtype != torch.float32:
        raise CheckpointError(
            f"{file}: centroids are {centroids.dtype} {tuple(centroids.shape)}, expected torch.float32 {expected}"
        )
    if not bool(torch.isfinite(centroids).all()):
        raise CheckpointError(f"{file}: the centroids hold NaN or infinite values")
    clusters = pooling.token_clusters
    if clusters.numel() and (int(clusters.min()) < 0 or int(clusters.max()) >= pooling.n_clusters):
        raise CheckpointError(f"{file}: the token -> cluster map names clusters outside [0, {pooling.n_clusters})")


def _is_lexicon_pooling(module: torch.nn.Module) -> bool:
    """lens-embed's LexiconPooling, or the copy a folder's ``modeling_lens.py`` defines (the same code,
    loaded by plain sentence-transformers with ``trust_remote_code=True``)."""
    cls = type(module)
    return isinstance(module, LexiconPooling) or (
        cls.__name__ == LexiconPooling.__name__ and cls.__module__.rsplit(".", 1)[-1] == MODELING_MODULE
    )


def is_lens_model(model: SentenceTransformer) -> bool:
    """Whether the model ends in LENS' lexicon pooling."""
    return any(_is_lexicon_pooling(module) for module in model)


def lexicon_pooling(model: SentenceTransformer) -> LexiconPooling:
    """The model's LexiconPooling module, or a clear error for other models."""
    for module in model:
        if _is_lexicon_pooling(module):
            return module
    raise ValueError("this is not a LENS model: it has no LexiconPooling module")


def encode(
    model: SentenceTransformer,
    texts: Sequence[str],
    *,
    query: bool = False,
    instruction: str | None = None,
    batch_size: int = 32,
    show_progress_bar: bool | None = None,
    max_active_dims: int | None = None,
    **encode_kwargs: Any,
) -> np.ndarray:
    """Embed texts as documents, or as instructed queries; validated, (0, dim) for an empty list.

    Args:
        model: A loaded model (LENS or any sentence-transformers model).
        texts: The texts (a list of strings; a single string is refused).
        query: Embed as queries (with the instruction prompt) instead of documents.
        instruction: The query instruction; None uses the model's "query" prompt. Queries only.
        batch_size: Texts per forward pass.
        show_progress_bar: Show a progress bar; None lets sentence-transformers decide.
        max_active_dims: Keep only each vector's N largest lexicon weights (:func:`lens_embed.pooling.keep_max_active_dims`,
            the engine's pruning: a hybrid's dense part is kept whole, nothing is re-normalised); None keeps all.
        **encode_kwargs: Passed on to ``encode_query`` / ``encode_document`` (e.g. ``convert_to_tensor``).

    Returns:
        A float32 array [len(texts), dimension].
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not a single string")
    texts = list(texts)
    validate_texts(texts)
    if max_active_dims is not None:
        checked_max_active_dims(max_active_dims)  # before the texts are embedded
    if not texts:
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    options = {"batch_size": batch_size, "show_progress_bar": show_progress_bar, **encode_kwargs}
    if not query:
        if instruction is not None:
            raise ValueError("an instruction applies to queries only: pass query=True")
        embeddings = model.encode_document(texts, **options)
    else:
        prompt = query_prompt(instruction) if instruction is not None else None
        embeddings = model.encode_query(texts, prompt=prompt, **options)
    if max_active_dims is None:
        return embeddings
    lexicon_dims = lexicon_pooling(model).n_clusters if is_lens_model(model) else None
    return keep_max_active_dims(embeddings, max_active_dims, lexicon_dims)
