"""What a model folder asks to run, read from its JSON files before anything is loaded.

sentence-transformers and transformers import code named by a model in three places:
``modules.json`` module types, ``auto_map`` / ``custom_pipelines`` entries of the configs that
transformers reads (``config.json``, ``tokenizer_config.json``, ``preprocessor_config.json``,
``processor_config.json``, at the root and in every module folder), and a ``tokenizer_class`` that
transformers does not define. :func:`code_references` lists every
such request, naming the file, so the loader can refuse them unless the user trusts the code, and
the converter can prove that its output asks for none. Which ``modeling_lens.*`` types are lens-embed's
own code is the caller's to say (``own_types``, from :func:`lens_embed.models.portable.own_code_types`): this
module knows no model class. Only JSON is read here, through transformers' file resolution: no torch,
no sentence-transformers, no code from the folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

import transformers
from transformers.utils import cached_file

TRUSTED_MODULE_PACKAGES = ("sentence_transformers.", "lens_embed.")
# The file lens-embed writes its modules' code into (:mod:`lens_embed.models.portable`): ``modules.json``
# names its classes ``modeling_lens.<Class>``.
MODELING_MODULE = "modeling_lens"
MODELING_FILE = f"{MODELING_MODULE}.py"
# Config entries that name code for transformers to import ("remote code").
CODE_REFERENCE_KEYS = ("auto_map", "custom_pipelines")
# The configs transformers reads them from (AutoConfig, AutoTokenizer, AutoImageProcessor..., AutoProcessor).
CONFIG_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")
# What sentence-transformers reads from every modules.json entry.
MODULE_KEYS = ("name", "path", "type")


class UntrustedCodeError(ValueError):
    """The model asks to import code from outside sentence-transformers, transformers and lens-embed.

    The message lists what it asks for and ends with how to allow it; :meth:`explained` words that end
    for another caller (a command names its own option, or none where it has none).
    """

    def __init__(self, name_or_path: str | os.PathLike, found: list[str]) -> None:
        self.name_or_path, self.found = name_or_path, found
        super().__init__(self.explained("pass trust_remote_code=True"))

    def explained(self, allow: str) -> str:
        """The message, ending in ``Inspect that code, then {allow} to allow it.``"""
        return (
            f"{self.name_or_path} asks to run code from outside sentence-transformers, transformers and "
            "lens-embed:\n  " + "\n  ".join(self.found) + f"\nInspect that code, then {allow} to allow it."
        )


def read_model_json(
    name_or_path: str | os.PathLike, filename: str, subfolder: str = "", **hub_kwargs: Any
) -> tuple[Any, str] | None:
    """A JSON file of a local folder or hub repository and its location, or None if it has none.

    ``hub_kwargs`` (``revision``, ``token``, ``cache_dir``, ``local_files_only``) go to transformers'
    ``cached_file``.
    """
    path = cached_file(
        str(name_or_path),
        filename,
        subfolder=subfolder,
        _raise_exceptions_for_missing_entries=False,
        **hub_kwargs,
    )
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")), path
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error


class Manifest:
    """A model folder or hub repository, each of its files read at most once: ``modules.json`` (checked),
    the JSON configs and text files that the checks before a load ask for.

    The code gate (:func:`code_references`), the modeling-file check
    (:func:`lens_embed.models.portable.own_code_types`) and the loader's checks
    (:func:`lens_embed.models.loading.load_lens_model`, which adds the weight headers) all read one manifest,
    so a load reads each file once whatever the number of checks. Files are read when first asked for:
    a folder's other files (weights of modules that run their own code) are never opened.

    Args:
        name_or_path: a model folder or hub id.
        **hub_kwargs: ``revision``, ``token``, ``cache_dir``, ``local_files_only`` for transformers'
            ``cached_file``.
    """

    def __init__(self, name_or_path: str | os.PathLike, **hub_kwargs: Any) -> None:
        self.name_or_path = str(name_or_path)
        self.hub_kwargs = hub_kwargs
        self._json: dict[tuple[str, str], tuple[Any, str] | None] = {}
        self._text: dict[str, str | None] = {}

    def json(self, filename: str, subfolder: str = "") -> tuple[Any, str] | None:
        """A JSON file and its location, or None if there is none (:func:`read_model_json`)."""
        key = (subfolder, filename)
        if key not in self._json:
            self._json[key] = read_model_json(self.name_or_path, filename, subfolder, **self.hub_kwargs)
        return self._json[key]

    def text(self, filename: str) -> str | None:
        """A text file at the root (``modeling_lens.py``), or None if there is none."""
        if filename not in self._text:
            path = cached_file(
                self.name_or_path, filename, _raise_exceptions_for_missing_entries=False, **self.hub_kwargs
            )
            # a folder may not hold the file at all (old folders, other models)
            self._text[filename] = Path(path).read_text(encoding="utf-8") if path is not None else None
        return self._text[filename]

    def modules(self) -> tuple[list[dict[str, Any]], str] | None:
        """``modules.json``'s entries and its location, or None if the model has none.

        sentence-transformers indexes each entry without checking it, so a file of another shape
        would fail deep inside it with a message that names neither the file nor the problem.

        Raises:
            ValueError: the file is not JSON, or not a list of objects with string ``name``, ``path``,
                ``type``.
        """
        loaded = self.json("modules.json")
        if loaded is None:
            return None
        entries, location = loaded
        if not isinstance(entries, list):
            raise ValueError(
                f"{location}: expected a JSON list of modules, one {{name, path, type}} object each, "
                f"got a JSON {type(entries).__name__}"
            )
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or not all(isinstance(entry.get(key), str) for key in MODULE_KEYS):
                raise ValueError(
                    f"{location}: module {index} must be an object with string {', '.join(MODULE_KEYS)}, "
                    f"got {json.dumps(entry)}"
                )
        return entries, location

    def module_entries(self) -> list[dict[str, Any]]:
        """``modules.json``'s entries; empty when the model has none."""
        loaded = self.modules()
        return loaded[0] if loaded is not None else []


def manifest(source: Manifest | str | os.PathLike, **hub_kwargs: Any) -> Manifest:
    """``source`` itself when it is already a :class:`Manifest` (read by an earlier check), else a new one."""
    return source if isinstance(source, Manifest) else Manifest(source, **hub_kwargs)


def is_transformers_class(name: str) -> bool:
    """Whether transformers itself defines the class (a tokenizer class it can build without model code)."""
    return isinstance(name, str) and name.isidentifier() and hasattr(transformers, name)


def _config_references(data: Any, location: str) -> list[str]:
    if not isinstance(data, dict):
        return []
    return [f"{location}: {key} {json.dumps(data[key])}" for key in CODE_REFERENCE_KEYS if data.get(key)]


def code_references(
    name_or_path: Manifest | str | os.PathLike, own_types: Collection[str], **hub_kwargs: Any
) -> list[str]:
    """Every request of the model to import code beyond sentence-transformers, transformers and lens-embed.

    Each entry names the file and what it asks for; an empty list means loading runs only
    installed library code.

    Args:
        name_or_path: a model folder or hub id, or its :class:`Manifest`.
        own_types: the ``modules.json`` types that resolve to installed code although they name the
            folder's own file: the ``modeling_lens.*`` types of a ``modeling_lens.py`` that lens-embed
            wrote (:func:`lens_embed.models.portable.own_code_types`); empty when it is not lens-embed's code.
        **hub_kwargs: ``revision``, ``token``, ``cache_dir``, ``local_files_only`` for a hub id.
    """
    files = manifest(name_or_path, **hub_kwargs)
    found: list[str] = []
    subfolders = [""]
    modules = files.modules()
    if modules is not None:
        entries, location = modules
        for entry in entries:
            module_type = entry["type"]
            untrusted = module_type not in own_types and not module_type.startswith(TRUSTED_MODULE_PACKAGES)
            if untrusted and module_type.startswith(f"{MODELING_MODULE}."):
                found.append(
                    f"{location}: module type {module_type!r} from {MODELING_FILE}, which is not code that "
                    "any lens-embed version wrote (modified or missing)"
                )
            elif untrusted:
                found.append(f"{location}: module type {module_type!r}")
            if entry["path"]:
                subfolders.append(entry["path"])
    for subfolder in subfolders:
        for filename in CONFIG_FILES:
            loaded = files.json(filename, subfolder)
            if loaded is None:
                continue
            data, location = loaded
            found.extend(_config_references(data, location))
            tokenizer_class = data.get("tokenizer_class") if isinstance(data, dict) else None
            if (
                filename == "tokenizer_config.json"
                and tokenizer_class
                and not is_transformers_class(tokenizer_class)
            ):
                found.append(f"{location}: tokenizer_class {tokenizer_class!r}")
    return found


def refuse_code_references(
    name_or_path: Manifest | str | os.PathLike, own_types: Collection[str], **hub_kwargs: Any
) -> None:
    """Raise UntrustedCodeError listing what the model asks to run, if anything (arguments as
    :func:`code_references`)."""
    files = manifest(name_or_path, **hub_kwargs)
    found = code_references(files, own_types)
    if found:
        raise UntrustedCodeError(files.name_or_path, found)
