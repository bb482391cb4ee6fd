"""Entry point of the Makefile's evaluation targets:
``python eval/evaluate.py {mteb,offline,airbench,check-harness,compare} ...``.

The same as ``lens-embed evaluate ...``: one CLI entry, one error format.
"""

import sys

from lens_embed.commands import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
