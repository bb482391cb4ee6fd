"""What a ``lens-embed`` verb is: a name, its options dataclass, and the function that runs it.

The registry of verbs (:data:`lens_embed.commands.registry.GROUPS`) is built from these light records, so
``lens-embed --help`` generates every parser without importing the modules that run the verbs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verb:
    """One verb of the command (or a verb that only groups sub-verbs, as ``evaluate`` does).

    Attributes:
        name: as typed (``encode-corpus``).
        help: one line for the verb list.
        options: the dataclass of its options (:mod:`lens_embed.base.options`); None for a group of sub-verbs.
        run: the name of the function in its group's runner module that takes the options instance and
            returns an exit code (None: 0).
        verbs: the sub-verbs (``evaluate offline``).
        description: the verb's ``--help`` text, when longer than ``help``.
    """

    name: str
    help: str
    options: type | None = None
    run: str = ""
    verbs: tuple[Verb, ...] = ()
    description: str | None = None
