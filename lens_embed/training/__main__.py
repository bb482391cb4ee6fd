"""``python -m lens_embed.training``: the training entry point for launchers.

Works unchanged under ``torchrun --nproc_per_node N -m lens_embed.training ...`` and
``accelerate launch -m lens_embed.training ...``: the trainer reads the distributed environment
those launchers set up. Options and errors are those of ``lens-embed train`` (the one CLI entry).
"""

from __future__ import annotations

import sys

from lens_embed.commands import main

if __name__ == "__main__":
    sys.exit(main(["--verbose", "train", *sys.argv[1:]]))
