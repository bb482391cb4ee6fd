"""The one loader, :func:`load_lens_model`, and its checks: files before the load, the model after.

It sits above the makers (:mod:`lens_embed.models.convert`: a released name is converted once into the
cache) and above the LENS model class it loads (:mod:`lens_embed.models.model`); everything that uses a
model, from ``lens-embed encode`` to evaluation and training, loads it here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Module, Transformer
from sentence_transformers.util import import_from_string
from transformers import AutoConfig

from lens_embed.base.storage import is_released_name, recover_replaced
from lens_embed.models.backbone import (
    CheckpointError,
    backbone_kwargs,
    expected_shapes,
    is_decoder_config,
    stored_shapes,
    weight_files,
)
from lens_embed.models.convert import converted_release_path
from lens_embed.models.exported import check_backend, exported_module_class, is_exported
from lens_embed.models.model import MAX_ACTIVE_DIMS_KEY, LensSentenceTransformer
from lens_embed.models.pooling import checked_max_active_dims
from lens_embed.models.portable import lens_module_classes, own_code_types
from lens_embed.models.safety import Manifest, refuse_code_references
from lens_embed.modules import LensSparseTransformer, LexiconPooling

# lens-embed's own sentence-transformers modules, by the type that modules.json records for them:
# resolved here, so sentence-transformers imports no code for them and its remote-code gate stays shut.
LENS_MODULE_CLASSES: dict[str, type[Module]] = lens_module_classes()
# JSON files sentence-transformers reads besides each module's own config (``Module.config_file_name``):
# the model's settings at the root, and the transformers config of a Transformer module's folder.
ROOT_JSON_FILES = ("config_sentence_transformers.json",)
MODULE_JSON_FILES = ("config.json",)


def load_lens_model(
    name_or_path: str | Path,
    device: str | None = None,
    *,
    trust_remote_code: bool = False,
    dtype: str | torch.dtype | None = None,
    attn_implementation: str | None = None,
    backend: str = "torch",
    **kwargs: Any,
) -> LensSentenceTransformer:
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
        dtype: Backbone dtype, one of :data:`lens_embed.base.defaults.DTYPES` or a torch.dtype; None keeps
            the saved one.
        attn_implementation: One of :data:`lens_embed.base.defaults.ATTN_IMPLEMENTATIONS`; None for
            transformers' choice.
        backend: ``"torch"``, or ``"onnx"`` / ``"openvino"`` to run the backbone from the folder's export
            (:mod:`lens_embed.models.exported`; ``model_kwargs={"file_name": ...}`` picks the file, float32 by
            default), refused when missing, damaged or exported from other weights. The head runs in
            torch, on the CPU.
        **kwargs: Passed on to ``SentenceTransformer`` (e.g. ``model_kwargs``, ``cache_folder``,
            ``revision``).

    Returns:
        The loaded model, a :class:`~lens_embed.models.model.LensSentenceTransformer` (LENS or not).
    """
    source = str(
        converted_release_path(str(name_or_path)) if is_released_name(name_or_path) else name_or_path
    )
    path = Path(source)
    local = names_a_folder(source)
    if local:
        recover_replaced(path)  # a folder a killed `build --overwrite` had moved aside
    check_exported_options(backend, path, device, dtype, attn_implementation)
    if local:
        if not path.is_dir():
            hint = (
                ""
                if "/" in source
                else f" (a hub model is named ORG/NAME, e.g. sentence-transformers/{source})"
            )
            raise FileNotFoundError(f"model directory not found: {path}{hint}")
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
    files = FolderManifest(source, **hub_kwargs)  # every check below reads the folder through it, once
    # A folder's modeling_lens.py resolves to the installed classes when it is exactly their code.
    own_types = own_code_types(files)
    if not trust_remote_code:
        refuse_code_references(files, own_types)
    # sentence-transformers' own way to load with known classes; other module types still meet its gate.
    module_classes = {**LENS_MODULE_CLASSES, **own_types}
    check_model_files(files, module_classes)
    if backend != "torch":
        module_classes = backbone_classes(files, module_classes)
        kwargs["backend"] = backend
        device = "cpu"
    check_model_type(files)
    model_kwargs = {
        **(kwargs.pop("model_kwargs", None) or {}),
        **backbone_kwargs(dtype=dtype, attn_implementation=attn_implementation),
    }
    if model_kwargs:
        kwargs["model_kwargs"] = model_kwargs
    # The one private call (see LensSentenceTransformer's docstring): SentenceTransformer(...) has no
    # public argument that maps modules.json types to classes.
    try:
        model = LensSentenceTransformer._load_with_module_classes(
            source, module_classes, device=device, trust_remote_code=trust_remote_code, **kwargs
        )
    except RuntimeError as error:  # transformers' "size mismatch" names neither file nor tensor
        mismatch = shape_mismatch(files)
        if mismatch is None:
            raise
        raise mismatch from error
    if model.is_lens_model():
        check_lens_model(model, files)
    return model


class FolderManifest(Manifest):
    """The loader's :class:`~lens_embed.models.safety.Manifest`: with each module folder's weight files and
    their tensor shapes (safetensors headers; ``.bin`` files opened with ``weights_only=True``), read once."""

    def __init__(self, name_or_path: str, **hub_kwargs: Any) -> None:
        super().__init__(name_or_path, **hub_kwargs)
        self._weights: dict[str, tuple[list[Path], dict[str, tuple[Path, tuple[int, ...]]]]] = {}

    def weights(self, subfolder: str = "") -> tuple[list[Path], dict[str, tuple[Path, tuple[int, ...]]]]:
        """The weight files of a module folder and every stored tensor's name -> (its file, its shape).

        Raises:
            CheckpointError: a damaged or truncated weight file, or a ``.bin`` that is not a plain state
                dict (:func:`lens_embed.models.backbone.stored_shapes`).
        """
        if subfolder not in self._weights:
            files = weight_files(self.name_or_path, subfolder, **self.hub_kwargs)
            self._weights[subfolder] = (files, stored_shapes(files))
        return self._weights[subfolder]

    def module_folders(self) -> dict[str, str]:
        """Module name -> its subfolder, as ``modules.json`` records them."""
        return {entry["name"]: entry["path"] for entry in self.module_entries()}


def names_a_folder(name: str) -> bool:
    """Whether a model name can only mean a local folder, so that a missing one is reported as missing
    rather than looked up on the hub: an absolute or ``./`` path, a path that exists, a name that is no
    hub id (a hub model is ``ORG/NAME``: a bare ``OUT`` or a deeper ``a/b/c`` is a folder), or an
    ``ORG/NAME`` whose ``ORG`` is a local folder."""
    path = Path(name)
    return (
        path.is_absolute()
        or name.startswith(".")
        or path.exists()
        or name.count("/") != 1
        or path.parent.is_dir()
    )


def check_exported_options(
    backend: str,
    path: Path,
    device: str | None,
    dtype: str | torch.dtype | None,
    attn_implementation: str | None,
) -> None:
    """Refuse, before anything loads, what an exported backbone cannot honour: another device than the
    CPU, a dtype other than float32 (the export fixes the precision), an attention kernel, a hub id."""
    check_backend(backend)
    if backend == "torch":
        return
    if device not in (None, "cpu"):
        raise ValueError(f"the {backend} backend runs on the CPU; got device {device!r}")
    if dtype not in (None, "float32", torch.float32):
        raise ValueError(f"the {backend} backend runs the export's own precision; --dtype applies to torch")
    if attn_implementation is not None:
        raise ValueError(f"--attn-implementation applies to the torch backend, not {backend}")
    if not path.is_dir():
        raise ValueError(f"the {backend} backend runs a local model folder's export; {path} is not a folder")


def backbone_classes(files: Manifest, module_classes: dict[str, type[Module]]) -> dict[str, type[Module]]:
    """``module_classes`` with each backbone (``Transformer``) type of the folder running its export
    (:func:`lens_embed.models.exported.exported_module_class`)."""
    location = (files.modules() or ([], ""))[1]
    resolved = dict(module_classes)
    for entry in files.module_entries():
        module_class = library_module_class(entry["type"], module_classes, location)
        if module_class is not None and issubclass(module_class, Transformer):
            resolved[entry["type"]] = exported_module_class(module_class)
    return resolved


def check_model_type(files: Manifest) -> None:
    """Refuse a folder saved for another sentence-transformers class (``model_type`` in
    ``config_sentence_transformers.json``; absent means ``SentenceTransformer``), or with a default
    ``max_active_dims`` that is not a positive integer, naming the file.

    ``SentenceTransformer`` would not load its modules but silently pool its backbone plainly (mean or
    last token). A LENS model's SparseEncoder folder (:mod:`lens_embed.models.sparse`) is named as such.
    """
    loaded = files.json(ROOT_JSON_FILES[0])
    if loaded is None:
        return
    settings, location = loaded
    if not isinstance(settings, dict):
        raise ValueError(f"{location}: expected a JSON object of model settings")
    if settings.get(MAX_ACTIVE_DIMS_KEY) is not None:
        try:
            checked_max_active_dims(settings[MAX_ACTIVE_DIMS_KEY])
        except ValueError as error:
            raise ValueError(f"{location}: {error}") from error
    model_type = settings.get("model_type", SentenceTransformer.model_type)
    if model_type == SentenceTransformer.model_type:
        return
    types = [entry["type"] for entry in files.module_entries()]
    sparse_face = model_type == "SparseEncoder" and any(
        t.endswith(f".{LensSparseTransformer.__name__}") for t in types
    )
    hint = (
        "; it is the SparseEncoder folder of a LENS model: load it with "
        "sentence_transformers.SparseEncoder(path, trust_remote_code=True), or load with lens-embed the "
        "LENS folder it was written from"
        if sparse_face
        else ""
    )
    raise ValueError(
        f"{location}: model_type {model_type!r}; lens-embed loads SentenceTransformer models, and "
        f"SentenceTransformer would ignore its modules and pool its backbone plainly{hint}"
    )


def check_model_files(files: FolderManifest, module_classes: dict[str, type[Module]]) -> None:
    """Before anything is built: every file that the library's modules will read is readable, each
    error naming it.

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
        files.json(filename)
    location = (files.modules() or ([], ""))[1]
    for entry in files.module_entries():
        module_class = library_module_class(entry["type"], module_classes, location)
        if module_class is None:
            continue
        for filename in dict.fromkeys(
            [getattr(module_class, "config_file_name", "config.json"), *MODULE_JSON_FILES]
        ):
            files.json(filename, entry["path"])
        files.weights(entry["path"])


def library_module_class(
    module_type: str, module_classes: dict[str, type[Module]], location: str
) -> type[Module] | None:
    """The class of a ``modules.json`` type that is library code (lens-embed's or sentence-transformers'),
    None for any other type; a ValueError naming ``location`` when it claims to be library code but no
    such class exists."""
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
        return import_from_string(
            module_type
        )  # sentence-transformers' own resolution of its types: library code only
    except ImportError as error:
        raise ValueError(
            f"{location}: module type {module_type!r} does not exist in sentence-transformers "
            f"{sentence_transformers.__version__} ({error})"
        ) from error


def shape_mismatch(files: FolderManifest) -> CheckpointError | None:
    """After a failed load: the first stored tensor whose shape its folder's ``config.json`` contradicts,
    naming the weight file, the tensor and both shapes; None when the files show no such tensor."""
    for subfolder in dict.fromkeys(["", *files.module_folders().values()]):
        try:
            config = AutoConfig.from_pretrained(files.name_or_path, subfolder=subfolder, **files.hub_kwargs)
            expected = expected_shapes(config)
        except (OSError, ValueError, KeyError):  # no transformers config here (a head, a pooling)
            continue
        stored = files.weights(subfolder)[1]
        for name, shape in expected.items():
            if name in stored and stored[name][1] != shape:
                file, found = stored[name]
                return CheckpointError(
                    f"{file}: tensor {name} has shape {list(found)}, but "
                    f"{Path(files.name_or_path, subfolder, 'config.json')} makes it {list(shape)}"
                )
    return None


def check_lens_model(model: LensSentenceTransformer, files: FolderManifest) -> None:
    """Refuse a LENS model that would embed wrongly without saying so; every error names the file
    (read from ``files``, the manifest the load was checked with)."""
    folders = files.module_folders()
    pooling = model.lexicon()
    for name, module in model.named_children():
        if isinstance(module, Transformer):
            check_backbone(module, files, folders.get(name, ""))
            hidden_size = module.auto_model.config.hidden_size
            if pooling.hidden_size != hidden_size:
                raise CheckpointError(
                    f"{files.name_or_path}: the LENS head reads hidden size {pooling.hidden_size} "
                    f"but the backbone has {hidden_size}"
                )
        elif isinstance(module, LexiconPooling):
            subfolder = folders.get(name, "")
            head_files = files.weights(subfolder)[0]
            check_head(
                module,
                head_files[0] if head_files else Path(files.name_or_path, subfolder, "model.safetensors"),
            )


def check_backbone(module: Transformer, files: FolderManifest, subfolder: str) -> None:
    """Every backbone tensor stored and finite; a decoder saved as bidirectional."""
    backbone = module.auto_model
    if is_decoder_config(backbone.config):
        loaded = files.json("config.json", subfolder)
        saved, config_file = (
            loaded if loaded is not None else ({}, Path(files.name_or_path, subfolder, "config.json"))
        )
        is_causal = saved.get("is_causal", "absent, so causal")
        if is_causal is not False or getattr(backbone.config, "is_causal", True) is not False:
            raise CheckpointError(
                f"{config_file}: a LENS decoder must be bidirectional (is_causal: false), "
                f"got is_causal: {is_causal}"
            )
    if is_exported(module):
        return  # the export's record ties it to these weights, checked when they were exported
    weights, stored = files.weights(subfolder)
    if not weights:
        raise CheckpointError(f"no backbone weight files in {Path(files.name_or_path, subfolder)}")
    tied = set(getattr(backbone, "all_tied_weights_keys", None) or {})
    missing = sorted(set(backbone.state_dict()) - set(stored) - tied)
    if missing:
        raise CheckpointError(
            f"{', '.join(map(str, weights))} lack {len(missing)} backbone tensor(s), which would be random: "
            + ", ".join(missing[:10])
        )
    for name, tensor in backbone.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            holder = stored[name][0] if name in stored else weights[0]
            raise CheckpointError(f"{holder}: backbone tensor {name} holds NaN or infinite values")


def check_head(pooling: LexiconPooling, file: Path) -> None:
    """Centroids finite, float32, of the configured [K, H] shape; every token mapped to a real cluster."""
    centroids = pooling.centroids
    expected = (pooling.n_clusters, pooling.hidden_size)
    if tuple(centroids.shape) != expected or centroids.dtype != torch.float32:
        raise CheckpointError(
            f"{file}: centroids are {centroids.dtype} {tuple(centroids.shape)}, "
            f"expected torch.float32 {expected}"
        )
    if not bool(torch.isfinite(centroids).all()):
        raise CheckpointError(f"{file}: the centroids hold NaN or infinite values")
    clusters = pooling.token_clusters
    if clusters.numel() and (int(clusters.min()) < 0 or int(clusters.max()) >= pooling.n_clusters):
        raise CheckpointError(
            f"{file}: the token -> cluster map names clusters outside [0, {pooling.n_clusters})"
        )
