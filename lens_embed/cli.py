"""The verbs not yet declared in :mod:`lens_embed.commands` (``evaluate``, ``train``, ``mine-negatives``):
their argparse registration, which :func:`lens_embed.commands.build_parser` extends with every other verb.

Building the parser imports nothing heavy (``lens-embed --help`` is instant).
"""

from __future__ import annotations

import argparse

from lens_embed.evaluation.cli import add_eval_commands
from lens_embed.training.cli import add_training_commands


def build_parser() -> argparse.ArgumentParser:
    """The ``lens-embed`` parser with the verbs registered here; imports nothing heavy."""
    parser = argparse.ArgumentParser(
        prog="lens-embed", description="The ``lens-embed`` command: thin verbs over the Python API."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_eval_commands(subparsers)
    add_training_commands(subparsers)
    return parser
