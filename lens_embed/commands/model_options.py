"""The options of the model verbs (``info``, ...): declared once, read by the parser and the runner."""

from __future__ import annotations

from dataclasses import dataclass

from lens_embed.cli_args import LoadOptions
from lens_embed.commands.verb import Verb
from lens_embed.options import option


@dataclass(kw_only=True)
class InfoOptions(LoadOptions):
    """``lens-embed info MODEL``."""

    model: str = option(help="model folder, hub id or released LENS name", positional=True)


VERBS = (Verb("info", "describe a LENS model", InfoOptions, "run_info"),)
