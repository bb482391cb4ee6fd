"""``python -m lens_embed.train``: the training entry point for launchers.

Works unchanged under ``torchrun --nproc_per_node N -m lens_embed.train ...`` and
``accelerate launch -m lens_embed.train ...``: the trainer reads the distributed environment
those launchers set up. Options are those of ``lens-embed train``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from lens_embed.training.cli import add_train_arguments, run_train


def main(argv: list[str] | None = None) -> int:
    """Parse the ``train`` options and run."""
    parser = add_train_arguments(argparse.ArgumentParser(prog="python -m lens_embed.train", description=__doc__))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run_train(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
