"""Self-contained LENS folders: the modules' code travels with the model as ``modeling_lens.py``.

sentence-transformers 6 loads a module type ``modeling_<name>.<Class>`` from the file
``modeling_<name>.py`` of the model repository (with ``trust_remote_code=True``), so a LENS model
saved by lens-embed loads on any machine with sentence-transformers alone. The file is not a
second copy of the code: it is generated from the package's own module sources (``lens_embed.modules``
and the lens-embed modules it imports, concatenated with those imports removed), so it always
holds exactly the code lens-embed runs.

lens-embed's own loader recognises the file by its content hash: a file identical to one that this
or an earlier lens-embed wrote (``modeling_digests.json``, package data) resolves to the installed
classes (no code from the folder runs, no remote-code flag needed), so folders saved before an
upgrade keep loading; a modified file is refused unless the user trusts it, and then
sentence-transformers runs the folder's copy.

This is the saved-folder layer: it works on folders and on the package's own module sources, never on
a model object (:meth:`lens_embed.models.model.LensSentenceTransformer.save` calls :func:`make_portable`).
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import json
import logging
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from sentence_transformers.base.modules import Module

import lens_embed
from lens_embed import modules as lens_modules
from lens_embed.base.storage import atomic_write
from lens_embed.models.safety import MODELING_FILE, MODELING_MODULE, Manifest, manifest

ROOT_MODULE = lens_modules.__name__
PACKAGE = "lens_embed"
DIGESTS_FILE = "modeling_digests.json"
logger = logging.getLogger(__name__)


def _package_imports(tree: ast.Module) -> Iterator[ast.ImportFrom | ast.Import]:
    """Every import of a lens-embed module, at any depth of a module's syntax tree."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (
            node.level > 0 or (node.module or "").split(".")[0] == PACKAGE
        ):
            yield node
        elif isinstance(node, ast.Import) and any(
            alias.name.split(".")[0] == PACKAGE for alias in node.names
        ):
            yield node


def _source_order(root: str = ROOT_MODULE) -> list[str]:
    """``root`` and the lens-embed modules it imports, dependencies first."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in path:
            raise ImportError(f"import cycle among lens-embed modules: {' -> '.join((*path, name))}")
        tree = ast.parse(inspect.getsource(importlib.import_module(name)))
        for node in _package_imports(tree):
            if node not in tree.body:
                raise ImportError(
                    f"{name}:{node.lineno}: imports lens-embed inside a function; "
                    "the portable modeling file cannot carry it"
                )
            if isinstance(node, ast.Import) or node.level > 0:
                raise ImportError(
                    f"{name}:{node.lineno}: use `from lens_embed.<module> import <names>` in module code"
                )
            visit(str(node.module), (*path, name))
        order.append(name)

    visit(root, ())
    return order


def _stripped(name: str, defined: dict[str, str]) -> str:
    """A module's source without its docstring, ``__future__`` and lens-embed imports; checks that the
    names it imports from lens-embed are defined by an earlier module and that it redefines none
    differently."""
    source = inspect.getsource(importlib.import_module(name))
    tree = ast.parse(source)
    lines = source.splitlines()
    dropped: set[int] = set()
    for node in tree.body:
        docstring = (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and node is tree.body[0]
        )
        future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
        package = node in list(_package_imports(tree))
        if package:
            missing = [alias.name for alias in node.names if alias.name not in defined]
            if missing:
                raise ImportError(
                    f"{name}:{node.lineno}: {', '.join(missing)} not defined by the modules before it"
                )
        if docstring or future or package:
            dropped.update(range(node.lineno - 1, node.end_lineno))
        for target in _defined_names(node):
            segment = ast.get_source_segment(source, node) or ""
            if target in defined and defined[target] != segment:
                raise ImportError(
                    f"{name}:{node.lineno}: {target} is also defined, differently, by an earlier module"
                )
            defined[target] = segment
    kept = [line for index, line in enumerate(lines) if index not in dropped]
    return "\n".join(kept).strip("\n")


def _defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


@cache
def modeling_source() -> str:
    """The text of ``modeling_lens.py`` for the installed lens-embed (generated, deterministic)."""
    defined: dict[str, str] = {}
    order = _source_order()
    parts = [
        f'"""LENS sentence-transformers modules, written by lens-embed {lens_embed.__version__} '
        "from its own sources\n"
        f"({', '.join(order)}): load this model with\n"
        '``SentenceTransformer(path, trust_remote_code=True)``; lens-embed is not needed."""',
        "from __future__ import annotations",
    ]
    for name in order:
        parts.append(f"# ---- {name} ----\n{_stripped(name, defined)}")
    return "\n\n\n".join(parts) + "\n"


def modeling_digest() -> str:
    """SHA-256 of this version's ``modeling_lens.py``."""
    return hashlib.sha256(modeling_source().encode("utf-8")).hexdigest()


@cache
def known_digests() -> dict[str, str]:
    """SHA-256 -> which lens-embed wrote it, for every ``modeling_lens.py`` lens-embed has written."""
    data = json.loads(resources.files(PACKAGE).joinpath(DIGESTS_FILE).read_text(encoding="utf-8"))
    return dict(data["digests"])


def portable_type(class_ref: str) -> str:
    """The ``modules.json`` type of a lens-embed module class in a self-contained folder."""
    return f"{MODELING_MODULE}.{class_ref.rsplit('.', 1)[-1]}"


def lens_module_classes() -> dict[str, type[Module]]:
    """``lens_embed.modules.<Class>`` -> the class, for every sentence-transformers module lens-embed
    defines."""
    return {
        f"{cls.__module__}.{cls.__qualname__}": cls
        for cls in vars(lens_modules).values()
        if isinstance(cls, type) and issubclass(cls, Module) and cls.__module__ == ROOT_MODULE
    }


def portable_classes() -> dict[str, type[Module]]:
    """``modeling_lens.<Class>`` -> the installed class, for every module class of the modeling file."""
    return {portable_type(name): cls for name, cls in lens_module_classes().items()}


def make_portable(folder: str | Path) -> Path:
    """Write ``modeling_lens.py`` into a saved model folder and point ``modules.json`` at it.

    Types of lens-embed module classes (``lens_embed.modules.LexiconPooling``) become
    ``modeling_lens.LexiconPooling``; sentence-transformers' own modules are left as they are.
    """
    root = Path(folder)
    modules_file = root / "modules.json"
    entries = json.loads(modules_file.read_text(encoding="utf-8"))
    for entry in entries:
        if str(entry["type"]).startswith(f"{ROOT_MODULE}.") or str(entry["type"]).startswith(
            f"{MODELING_MODULE}."
        ):
            entry["type"] = portable_type(str(entry["type"]))
    atomic_write(root / MODELING_FILE, lambda stream: stream.write(modeling_source().encode("utf-8")))
    atomic_write(modules_file, lambda stream: stream.write(json.dumps(entries, indent=2).encode("utf-8")))
    return root / MODELING_FILE


def own_code_types(source: Manifest | str | Path, **hub_kwargs: Any) -> dict[str, type]:
    """``modeling_lens.<Class>`` -> installed class when the folder's ``modeling_lens.py`` is exactly the
    code this or an earlier lens-embed wrote; empty when the folder has no such file or a different one.

    Args:
        source: a model folder or hub id, or its :class:`~lens_embed.models.safety.Manifest`.
        **hub_kwargs: ``revision``, ``token``, ``cache_dir``, ``local_files_only`` for a hub id.
    """
    files = manifest(source, **hub_kwargs)
    text = files.text(MODELING_FILE)
    if text is None:
        return {}
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if digest != modeling_digest():
        written_by = known_digests().get(digest)
        if written_by is None:
            return {}
        logger.info(
            "%s: %s was written by %s; loading with the installed classes",
            files.name_or_path,
            MODELING_FILE,
            written_by,
        )
    return portable_classes()
