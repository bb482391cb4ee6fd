"""What a model folder asks to run, read from its JSON files before anything is loaded.

sentence-transformers and transformers import code named by a model in three places:
``modules.json`` module types, ``auto_map`` / ``custom_pipelines`` entries of the configs that
transformers reads (``config.json``, ``tokenizer_config.json``, ``preprocessor_config.json``,
``processor_config.json``, at the root and in every module folder), and a ``tokenizer_class`` that
transformers does not define. :func:`code_references` lists every
such request, naming the file, so the loader can refuse them unless the user trusts the code, and
the converter can prove that its output asks for none. Which ``modeling_lens.*`` types are lens-embed's
own code is the caller's to say (``own_types``, from :func:`lens_embed.portable.own_code_types`): this
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
# The file lens-embed writes its modules' code into (:mod:`lens_embed.portable`): ``modules.json`` names its
# classes ``modeling_lens.<Class>``.
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


def read_modules(
    name_or_path: str | os.PathLike, **hub_kwargs: Any
) -> tuple[list[dict[str, Any]], str] | None:
    """``modules.json``'s entries and its location, or None if the model has none.

    sentence-transformers indexes each entry without checking it, so a file of another shape
    would fail deep inside it with a message that names neither the file nor the problem.

    Raises:
        ValueError: the file is not JSON, or not a list of objects with string ``name``, ``path``, ``type``.
    """
    loaded = read_model_json(name_or_path, "modules.json", **hub_kwargs)
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


def is_transformers_class(name: str) -> bool:
    """Whether transformers itself defines the class (a tokenizer class it can build without model code)."""
    return isinstance(name, str) and name.isidentifier() and hasattr(transformers, name)


def _config_references(data: Any, location: str) -> list[str]:
    if not isinstance(data, dict):
        return []
    return [f"{location}: {key} {json.dumps(data[key])}" for key in CODE_REFERENCE_KEYS if data.get(key)]


def code_references(
    name_or_path: str | os.PathLike, own_types: Collection[str], **hub_kwargs: Any
) -> list[str]:
    """Every request of the model to import code beyond sentence-transformers, transformers and lens-embed.

    Each entry names the file and what it asks for; an empty list means loading runs only
    installed library code.

    Args:
        name_or_path: a model folder or hub id.
        own_types: the ``modules.json`` types that resolve to installed code although they name the
            folder's own file: the ``modeling_lens.*`` types of a ``modeling_lens.py`` that lens-embed
            wrote (:func:`lens_embed.portable.own_code_types`); empty when it is not lens-embed's code.
        **hub_kwargs: ``revision``, ``token``, ``cache_dir``, ``local_files_only`` for a hub id.
    """
    found: list[str] = []
    subfolders = [""]
    modules = read_modules(name_or_path, **hub_kwargs)
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
            loaded = read_model_json(name_or_path, filename, subfolder, **hub_kwargs)
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
    name_or_path: str | os.PathLike, own_types: Collection[str], **hub_kwargs: Any
) -> None:
    """Raise UntrustedCodeError listing what the model asks to run, if anything (arguments as
    :func:`code_references`)."""
    found = code_references(name_or_path, own_types, **hub_kwargs)
    if found:
        raise UntrustedCodeError(name_or_path, found)
