"""The ``lens-embed`` command, the package's top layer: thin verbs over the Python API.

Every verb is a :class:`~lens_embed.commands.verb.Verb` of one group; its options are one dataclass
(:mod:`lens_embed.base.options`) declared in the group's light ``*_options`` module, and the function that
runs it lives in the group's runner module, imported only when one of its verbs runs: building the parser
(``lens-embed --help``) loads nothing heavy. Every verb's user errors are reported by :func:`main` in one
format, ``lens-embed VERB: error: MESSAGE``, with exit code 2 and no traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from types import ModuleType
from typing import Any

from lens_embed.base.options import add_arguments, from_namespace, outputs
from lens_embed.base.storage import check_writable
from lens_embed.commands import evaluation_options, model_options, serving_options, training_options
from lens_embed.commands.verb import Verb

# The verb groups, in the order ``--help`` lists them: (name, the light module declaring their VERBS).
GROUPS: tuple[tuple[str, Any], ...] = (
    ("models", model_options),
    ("serving", serving_options),
    ("evaluation", evaluation_options),
    ("training", training_options),
)
# What a user can cause (bad files, arguments, models, data): reported in one line, exit code 2.
# The project's own error classes (CheckpointError, DataDirError, TrainingDataError, ...) derive
# from ValueError or OSError; ImportError covers a missing optional dependency (faiss, mteb...).
USER_ERRORS = (ValueError, TypeError, IndexError, OSError, ImportError)


def runner(group: str) -> ModuleType:
    """The module that runs a group's verbs. Imported here, when a verb runs, and nowhere else: these are
    the command's only imports made inside a function, so that ``--help`` loads no torch."""
    if group == "models":
        from lens_embed.commands import model_verbs  # heavy (torch): only when one of its verbs runs

        return model_verbs
    if group == "serving":
        from lens_embed.commands import serving_verbs  # heavy (torch): only when one of its verbs runs

        return serving_verbs
    if group == "evaluation":
        from lens_embed.commands import evaluation_verbs  # heavy (torch): only when one of its verbs runs

        return evaluation_verbs
    if group == "training":
        from lens_embed.commands import training_verbs  # heavy (torch): only when one of its verbs runs

        return training_verbs
    raise ValueError(f"no verb group {group!r}")


def add_verbs(subparsers: Any, verbs: tuple[Verb, ...], group: str) -> None:
    """One parser per verb (and per sub-verb), each remembering its verb and group."""
    for verb in verbs:
        parser = subparsers.add_parser(verb.name, help=verb.help, description=verb.description or verb.help)
        if verb.verbs:
            add_verbs(parser.add_subparsers(dest=f"{verb.name}_verb", required=True), verb.verbs, group)
            continue
        if verb.options is not None:
            add_arguments(parser, verb.options)
        parser.set_defaults(verb=verb, group=group)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``lens-embed`` parser, every verb included; imports nothing heavy."""
    parser = argparse.ArgumentParser(prog="lens-embed", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for group, module in GROUPS:
        add_verbs(subparsers, module.VERBS, group)
    return parser


def parse(argv: list[str]) -> Any:
    """The options a command line gives its verb: the verb's options instance, every default filled in."""
    args = build_parser().parse_args(argv)
    return from_namespace(args.verb.options, args)


def _message(error: BaseException, args: argparse.Namespace, options: Any) -> str:
    """A user error's message; a model asking to run its own code (``UntrustedCodeError.explained``) is
    told how to allow it with what this verb has: ``--trust-remote-code``, or the Python API."""
    explained = getattr(error, "explained", None)
    if explained is None:
        return str(error)
    if hasattr(options, "trust_remote_code"):
        return explained("pass --trust-remote-code")
    verb = f"lens-embed {args.command}"
    return explained(f"load it from Python with trust_remote_code=True (`{verb}` runs no model's own code)")


def main(argv: list[str] | None = None) -> int:
    """Run one ``lens-embed`` verb; returns the exit code.

    Usage errors exit through argparse (code 2). A user error raised by any verb (bad file,
    argument, model or data: :data:`USER_ERRORS`) prints ``lens-embed VERB: error: MESSAGE`` to
    stderr and returns 2; an interrupt returns 130. Nothing already written is removed.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    options = None
    try:
        options = from_namespace(args.verb.options, args)
        for value, name, folder in outputs(options):  # before the verb loads or computes anything
            check_writable(value, name, folder=folder)
        code = getattr(runner(args.group), args.verb.run)(options)
    except USER_ERRORS as error:
        print(f"lens-embed {args.command}: error: {_message(error, args, options)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lens-embed {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
