"""The documentation cannot drift from the code: the Python examples of the README and of the docs pages
run, and the README's extras table, CLI synopsis and citation are the package's.

Each ```python block runs on its own, in a fresh namespace with a temporary folder as working directory,
on the embedded default (assembled once into the usual cache). A comment ``# prints TEXT`` says what the
block prints (``...`` stands for any text) and is checked. A block preceded by
``<!-- docs-test: skip REASON -->`` (one needing the hub, a GPU or a server) is skipped with that reason.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lens_embed.base.citation import LENS_CITATION

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PRINTS = re.compile(r"# prints (.+)$", re.M)
BLOCK = re.compile(r"(?:<!-- docs-test: skip (?P<skip>.+?) -->\n)?```python\n(?P<code>.*?)^```", re.S | re.M)


def python_blocks() -> list[pytest.param]:
    """Every ```python block of the pages, with its skip reason where it has one."""
    blocks = []
    for page in PAGES:
        for number, match in enumerate(BLOCK.finditer(page.read_text(encoding="utf-8")), start=1):
            name = f"{page.relative_to(REPO)}#{number}"
            marks = [pytest.mark.skip(reason=match["skip"])] if match["skip"] else []
            blocks.append(pytest.param(name, match["code"], id=name, marks=marks))
    return blocks


def test_the_pages_hold_runnable_examples() -> None:
    runnable = [block for block in python_blocks() if not block.marks]
    assert {block.values[0].split("#")[0] for block in runnable} >= {"README.md", "docs/index.md"}


@pytest.mark.parametrize(("name", "code"), python_blocks())
def test_the_python_example_runs(
    name: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with contextlib.redirect_stdout(io.StringIO()) as output:
        exec(compile(code, name, "exec"), {"__name__": "__docs__"})  # the repository's own text, never input
    for shown in PRINTS.findall(code):
        pattern = ".*?".join(re.escape(part) for part in shown.strip().split("..."))
        assert re.search(pattern, output.getvalue()), (
            f"{name} says it prints {shown!r}; it printed:\n{output.getvalue()}"
        )


def section(text: str, heading: str) -> str:
    """The text of a ``## heading`` section, up to the next ``## ``."""
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_extras_table_lists_the_extras_of_pyproject() -> None:
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    declared = re.findall(
        r"^([a-z]+) = \[", pyproject.split("[project.optional-dependencies]")[1].split("\n[")[0], re.M
    )
    table = section((REPO / "README.md").read_text(encoding="utf-8"), "Extras")
    assert re.findall(r"^\| `([a-z]+)` \|", table, re.M) == declared


def test_the_readme_synopsis_shows_every_verb() -> None:
    top = subprocess.run(
        [sys.executable, "-m", "lens_embed.commands", "--help"], capture_output=True, text=True, check=True
    ).stdout
    verbs = re.search(r"^  \{([\w,-]+)\}", top, re.M)[1].split(",")
    synopsis = section((REPO / "README.md").read_text(encoding="utf-8"), "Command line")
    assert [verb for verb in verbs if f"lens-embed {verb} " not in synopsis] == []


@pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
def test_the_citation_is_the_package_one(page: str) -> None:
    assert f"```bibtex\n{LENS_CITATION}\n```" in (REPO / page).read_text(encoding="utf-8")


def test_the_readme_leaves_dated_measurements_to_the_results_page() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert re.findall(r"\b20\d\d-[01]\d-[0-3]\d\b", readme) == []  # measurements go to docs/results.md
