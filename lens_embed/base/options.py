"""Options declared once, as dataclasses, and the argparse parsers generated from them.

A verb's options (and a training run's, :class:`lens_embed.training.config.TrainConfig`) are one dataclass
whose fields carry their help, flags, choices and validator (a :mod:`lens_embed.base.cli_args` ``type=``) in
their metadata (:func:`option`). :func:`add_arguments` turns the dataclass into argparse options and
:func:`from_namespace` reads the parsed namespace back into an instance in one call, so the Python API,
the command line and a recorded configuration cannot drift apart. Option groups shared by several verbs
(loading, clusters) are dataclasses too, combined by inheritance (every options class is ``kw_only``).
Imports only the standard library: building every parser loads nothing heavy.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import typing
from collections.abc import Callable
from dataclasses import field
from typing import Any, TypeVar

T = TypeVar("T")

# ``output`` metadata: what the path a verb writes to must be (checked before the verb runs).
OUTPUT_KINDS: dict[str, bool | None] = {"file": False, "folder": True, "either": None}


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    flags: tuple[str, ...] = (),
    cli: bool = True,
    choices: tuple[str, ...] | None = None,
    factory: Any = None,
    check: Callable[[str], Any] | None = None,
    positional: bool = False,
    nargs: str | None = None,
    output: str | None = None,
    exclusive: str | None = None,
    default_text: str | None = None,
    negatable: bool = True,
) -> Any:
    """A dataclass field with its command-line declaration in the metadata.

    Args:
        default: the value when the option is not given (none: required).
        help: the option's help text.
        flags: extra spellings (``("--lr",)``).
        cli: False for a field the command line does not set.
        choices: the accepted values.
        factory: a default factory (lists).
        check: the ``type=`` validator that converts and bounds the text (:mod:`lens_embed.base.cli_args`).
        positional: an argument without ``--`` (its name is the field's).
        nargs: argparse's ``nargs`` where the type alone does not say it (``"?"``, ``"*"``).
        output: the verb writes to this path, a ``"file"``, ``"folder"`` or ``"either"``: checked with
            :func:`lens_embed.base.storage.check_writable` before the verb loads anything.
        exclusive: the name of a mutually exclusive group the option belongs to.
        default_text: how the help names the default (default: the value; ``None`` reads "auto"). An
            options class may say it again for an inherited field, in its ``DEFAULT_TEXTS``.
        negatable: for a boolean, ``--x/--no-x``; False: a plain switch ``--x`` (default False), whose
            help names no default unless ``default_text`` does.
    """
    if output is not None and output not in OUTPUT_KINDS:
        raise ValueError(f"option output: expected one of {sorted(OUTPUT_KINDS)}, got {output!r}")
    metadata = {
        "help": help,
        "flags": flags,
        "cli": cli,
        "choices": choices,
        "check": check,
        "positional": positional,
        "nargs": nargs,
        "output": output,
        "exclusive": exclusive,
        "default_text": default_text,
        "negatable": negatable,
    }
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def flag(name: str) -> str:
    """The option spelling of a field name: ``learning_rate`` -> ``--learning-rate``."""
    return "--" + name.replace("_", "-")


def _required(item: dataclasses.Field) -> bool:
    return item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING


def _default_text(item: dataclasses.Field, texts: dict[str, str], switch: bool) -> str | None:
    """How the help names a field's default: the class's own wording, the field's, none for a switch,
    else the value."""
    if item.name in texts:
        return texts[item.name]
    if item.metadata.get("default_text") is not None:
        return item.metadata["default_text"]
    if switch:
        return None
    if item.default_factory is not dataclasses.MISSING:
        return repr(item.default_factory())
    return "auto" if item.default is None else str(item.default)


def _value_type(kind: Any) -> Any:
    """``X | None`` -> ``X``; other annotations as they are."""
    args = typing.get_args(kind)
    if args and type(None) in args:
        return next(arg for arg in args if arg is not type(None))
    return kind


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> argparse.ArgumentParser:
    """One argparse option per command-line field of the dataclass ``cls``.

    Options left out of a command line stay out of the namespace (``argparse.SUPPRESS``), so
    :func:`from_namespace` gives them the dataclass default: the default is declared once. Booleans are
    ``--x/--no-x`` (or a switch); lists take one or more values (or ``nargs``). A class attribute
    ``DEFAULT_TEXTS = {field: text}`` words an inherited field's default for that class (``build``'s
    ``--dtype`` default is "the checkpoint's", not "the saved one").
    """
    hints = typing.get_type_hints(cls)
    texts = getattr(cls, "DEFAULT_TEXTS", {})
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for item in dataclasses.fields(cls):
        meta = item.metadata
        if not meta.get("cli", True):
            continue
        base = _value_type(hints[item.name])
        kwargs: dict[str, Any] = {"help": meta.get("help", "")}
        switch = base is bool and not meta.get("negatable", True)
        if base is bool:
            kwargs["action"] = "store_true" if switch else argparse.BooleanOptionalAction
        elif typing.get_origin(base) is list:
            kwargs.update(nargs=meta.get("nargs") or "+", type=meta.get("check") or typing.get_args(base)[0])
        else:
            kwargs["type"] = meta.get("check") or base
            if meta.get("nargs"):
                kwargs["nargs"] = meta["nargs"]
        if meta.get("choices"):
            kwargs["choices"] = meta["choices"]
        required = _required(item)
        if not required:
            kwargs["default"] = argparse.SUPPRESS
            text = _default_text(item, texts, switch)
            kwargs["help"] += "" if text is None else f" (default: {text})"
        if meta.get("positional"):
            if not required:
                kwargs.setdefault("nargs", "?")
            parser.add_argument(item.name, **kwargs)
            continue
        if required:
            kwargs["required"] = True
        target: argparse._ActionsContainer = parser
        if meta.get("exclusive"):
            if meta["exclusive"] not in groups:  # one group per name (setdefault would make one each time)
                groups[meta["exclusive"]] = parser.add_mutually_exclusive_group()
            target = groups[meta["exclusive"]]
        target.add_argument(flag(item.name), *meta.get("flags", ()), dest=item.name, **kwargs)
    return parser


def check_values(options: Any) -> None:
    """Refuse a field value out of its bounds or choices, as the command line would at parse time, so the
    Python API gets the same checks (call it from ``__post_init__``); the error names class and field."""
    owner = type(options).__name__
    for item in dataclasses.fields(options):
        value = getattr(options, item.name)
        check, choices = item.metadata.get("check"), item.metadata.get("choices")
        if value is None:
            continue
        for each in value if isinstance(value, list) else [value]:
            if check is not None:
                try:
                    check(str(each))  # the command line's own validator, on the value as it spells it
                except argparse.ArgumentTypeError as error:
                    raise ValueError(f"{owner} {item.name}: {error}") from None
            if choices and each not in choices:
                raise ValueError(f"{owner} {item.name}: must be one of {', '.join(choices)}, got {each!r}")


def from_namespace(cls: type[T], args: argparse.Namespace) -> T:
    """The ``cls`` instance of parsed options (options left out keep the dataclass defaults)."""
    names = {item.name for item in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{key: value for key, value in vars(args).items() if key in names})


def outputs(options: Any) -> list[tuple[Any, str, bool | None]]:
    """The paths an options instance writes to, ``(value, name in messages, folder)``, where given."""
    found = []
    for item in dataclasses.fields(options):
        kind = item.metadata.get("output")
        value = getattr(options, item.name)
        if kind is not None and value is not None:
            name = item.name.upper() if item.metadata.get("positional") else flag(item.name)
            found.append((value, name, OUTPUT_KINDS[kind]))
    return found


def keywords(options: Any, target: Callable[..., Any]) -> dict[str, Any]:
    """The fields of an options instance that ``target`` takes by name, so a verb hands its options to the
    Python API in one call instead of copying them one by one: a function's keyword-only parameters (its
    positional ones the verb passes itself) or a class's every constructor parameter (a dataclass of
    settings). A field named otherwise (``--shards`` for ``shard_dir``) is passed explicitly beside
    these."""
    parameters = inspect.signature(target).parameters.values()
    kinds = (inspect.Parameter.KEYWORD_ONLY,)
    if isinstance(target, type):
        kinds += (inspect.Parameter.POSITIONAL_OR_KEYWORD,)
    wanted = {item.name for item in parameters if item.kind in kinds}
    return {
        item.name: getattr(options, item.name) for item in dataclasses.fields(options) if item.name in wanted
    }
