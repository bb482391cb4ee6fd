"""Entry point of the Makefile's evaluation targets: ``python eval/evaluate.py {mteb,offline,airbench,check-harness} ...``."""

import sys

from lens_embed.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
