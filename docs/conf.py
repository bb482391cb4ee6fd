"""Sphinx configuration of the lens-embed docs (``make docs``).

The pages are MyST Markdown; the API reference is autodoc + napoleon over the package's Google-style
docstrings. Three things are generated on every build into ``_generated/`` (ignored by git, excluded from
the page list, pulled in with ``{include}`` and image directives), so they follow the code and the
recorded results: the API page's list of names (``lens_embed.__all__``), the CLI reference (the
``--help`` text of every verb) and the plots (from the tables of the results pages).
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))  # the generators beside this file
sys.path.insert(0, str(DOCS.parent))  # the lens_embed of this checkout, not an installed copy

import generate  # noqa: E402

import lens_embed  # noqa: E402

project = "lens-embed"
author = "lens-embed developers"
release = version = lens_embed.__version__
copyright = "the lens-embed developers, Apache-2.0"

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated"]

# MyST: `#heading` links inside and across pages, and the {include} / {eval-rst} directives.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

# autodoc: members in source order, signatures with their type hints; napoleon reads the "Args:" blocks.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"lens-embed {release}"

generate.write_all(DOCS / "_generated")
