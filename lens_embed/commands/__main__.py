"""``python -m lens_embed.commands``: the ``lens-embed`` command (``torchrun ... -m lens_embed.commands``)."""

import sys

from lens_embed.commands import main

sys.exit(main())
