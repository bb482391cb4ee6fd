"""What the docs build generates, so that it follows the code and the recorded results.

- ``api_names.md``: an autodoc entry for every name of ``lens_embed.__all__``, grouped by defining module;
- ``cli.md``: the ``--help`` text of ``lens-embed`` and of every verb and sub-verb, as the command prints it;
- the plots, drawn from the Markdown tables where the measurements are recorded (``benchmarks/RESULTS.md``,
  ``docs/results.md``). A table is found by its section heading and its column names; a section or column
  that is gone stops the build naming it, so a plot never silently shows other rows.

Parsing the recorded tables rather than keeping a second copy of the numbers in JSON keeps one record of
each measurement: the table a reader sees is the data the plot is drawn from.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import lens_embed  # noqa: E402
from lens_embed.evaluation.reports import bar_chart  # noqa: E402
from lens_embed.evaluation.runner import Score  # noqa: E402

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
DOCS_RESULTS = DOCS / "results.md"


# ---- recorded tables ----
def markdown_table(path: Path, heading: str, columns: Sequence[str]) -> list[dict[str, str]]:
    """The rows of the first table under the heading that starts with ``heading``, as {column: cell}.

    Raises:
        ValueError: The heading, its table or one of ``columns`` is missing (the record was restructured).
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    starts = [
        i for i, line in enumerate(lines) if re.match(r"^#+ ", line) and line.lstrip("# ").startswith(heading)
    ]
    if not starts:
        raise ValueError(f"{path}: no section {heading!r} (a plot is drawn from its table)")
    level = len(lines[starts[0]]) - len(lines[starts[0]].lstrip("#"))
    rows: list[list[str]] = []
    fenced = False  # a "# comment" inside a code block is no heading
    for line in lines[starts[0] + 1 :]:
        fenced ^= line.startswith("```")
        marks = len(line) - len(line.lstrip("#"))
        if not fenced and line.startswith("#") and line[marks : marks + 1] == " " and marks <= level:
            break
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    if len(rows) < 3:
        raise ValueError(f"{path}: section {heading!r} holds no table")
    header, body = rows[0], rows[2:]
    missing = [column for column in columns if column not in header]
    if missing:
        raise ValueError(f"{path}: the table of {heading!r} lacks the columns {missing}")
    return [dict(zip(header, row, strict=True)) for row in body]


def number(cell: str) -> float:
    """A table cell's leading number: ``"63.6 (86.0)"`` -> 63.6, ``"1,492.8"`` -> 1492.8, ``"**74.25**"``."""
    match = re.match(r"[*\s]*([-+]?[\d,]*\.?\d+)", cell)
    if not match:
        raise ValueError(f"not a number: {cell!r}")
    return float(match.group(1).replace(",", ""))


# ---- plots ----
def evaluation_chart(path: Path) -> Path:
    """The evaluation summary chart (the package's own, ``reports.bar_chart``) of the offline suite table."""
    rows = markdown_table(DOCS_RESULTS, "Embedded default vs baselines", ["task", "type", "main score"])
    models = [column for column in rows[0] if column not in ("task", "type", "main score")]
    scores = [
        Score(model, row["task"], row["type"], row["main score"], number(row[model]))
        for row in rows
        for model in models
        if row[model] not in ("–", "-", "")
    ]
    return bar_chart(scores, path, title="Offline suite: the embedded default beside its baselines")


def sparse_chart(path: Path) -> Path:
    """SciFact nDCG@10 against the active dimensions per document: whole-vector top N vs per-position top k
    (the shipped default, issue 25's table) and each trained model's top N (issue 19's table)."""
    ndcg, active = "SciFact nDCG@10", "active dims / doc"
    topk = markdown_table(
        RESULTS, "Sparse LENS: per-position top-k", ["model", "vectors", ndcg, f"{active} (p90)"]
    )
    models = markdown_table(RESULTS, "Sparse LENS: `make bench-sparse`", ["model", "vectors", ndcg, active])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for label, keep in (
        ("top N of the whole vector", lambda v: v.startswith("sparse, top") or v == "sparse, all"),
        ("per-position top k", lambda v: v.startswith("sparse, per-position")),
    ):
        points = sorted(
            (number(row[f"{active} (p90)"]), number(row[ndcg]), row["vectors"].split()[-1])
            for row in topk
            if keep(row["vectors"])
        )
        left.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        for x, y, name in points:
            left.annotate(name, (x, y), textcoords="offset points", xytext=(4, -10), fontsize="x-small")
    left.set_title("the shipped default, zero-shot")
    for model in dict.fromkeys(row["model"] for row in models):
        points = sorted(
            (number(row[active]), number(row[ndcg]))
            for row in models
            if row["model"] == model and row["vectors"].startswith("sparse")
        )
        right.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=model)
    right.set_title("top N per document, by training")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("active dimensions per document (mean, log scale)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    left.set_ylabel("SciFact nDCG@10 (1000 documents)")
    return save(fig, path)


def engine_chart(path: Path) -> Path:
    """Recall@10 against RAM per document for each engine configuration, at its largest N measured (the
    memory check and the time guard stop configurations at different sizes)."""
    ram, recall = "RAM B/doc", "recall@10"
    rows = markdown_table(RESULTS, "Serving at scale", ["configuration", "N", ram, recall])
    largest = {row["configuration"]: row for row in sorted(rows, key=lambda row: number(row["N"]))}
    fig, ax = plt.subplots(figsize=(10, 4.5))
    markers = "osD^vP*X"
    for index, (name, row) in enumerate(largest.items()):
        ax.scatter(
            number(row[ram]),
            number(row[recall]),
            marker=markers[index % len(markers)],
            s=60,
            label=f"{name} (N = {number(row['N']):,.0f})",
        )
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_xscale("log")
    ax.set_xlabel("RAM per document, bytes (log scale)")
    ax.set_ylabel("recall@10 against exact search")
    ax.set_title("make bench-scale: each configuration at its largest N")
    ax.grid(alpha=0.3)
    return save(fig, path)


def save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---- the API list and the CLI reference ----
def defining_module(name: str) -> tuple[str, str]:
    """The package module whose top level assigns ``name``, and the comment lines just above it."""
    for path in sorted((REPO / "lens_embed").rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        for node in ast.parse(source).body:
            targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
            if any(isinstance(target, ast.Name) and target.id == name for target in targets):
                above = source.splitlines()[: node.lineno - 1]
                comment = []
                while above and above[-1].startswith("#"):
                    comment.insert(0, above.pop().lstrip("# "))
                module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                return module, " ".join(comment)
    raise ValueError(f"lens_embed.{name} is assigned in no module of the package")


def shown_value(value: object) -> str:
    """A constant's value for the table: its repr, or a dict's keys when that is long."""
    text = repr(value)
    if len(text) > 60 and isinstance(value, dict):
        text = "keys: " + ", ".join(map(str, value))
    return text.replace("|", "\\|")


def api_names() -> str:
    """An autodoc entry for every public function and class under the module that defines it, and a table
    of the public constants (autodoc would show an int's or a dict's class docstring for them)."""
    by_module: dict[str, list[tuple[str, str]]] = {}
    constants = ["| name | value | defined in | what it is |", "| --- | --- | --- | --- |"]
    for name in lens_embed.__all__:
        obj = getattr(lens_embed, name)
        if not callable(obj):
            module, comment = defining_module(name)
            constants.append(f"| `lens_embed.{name}` | `{shown_value(obj)}` | `{module}` | {comment} |")
            continue
        kind = "autoclass" if isinstance(obj, type) else "autofunction"
        by_module.setdefault(obj.__module__, []).append((kind, name))
    text = []
    for module in sorted(by_module):
        text += [f"### `{module}`", ""]
        for kind, name in by_module[module]:
            options = ["   :members:"] if kind == "autoclass" else []
            text += ["```{eval-rst}", f".. {kind}:: lens_embed.{name}", *options, "```", ""]
    return "\n".join([*text, "### Constants", "", *constants, ""])


def help_text(args: Sequence[str]) -> str:
    """What ``lens-embed ARGS --help`` prints, at a fixed width."""
    env = {
        **os.environ,
        "COLUMNS": "100",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "lens_embed.commands", *args, "--help"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def sub_verbs(text: str) -> list[str]:
    """The verbs a help text offers: the ``{a,b,...}`` choices listed first under its positional arguments."""
    match = re.search(r"^  \{([\w,-]+)\}", text, re.MULTILINE)
    return match.group(1).split(",") if match else []


def cli_reference() -> str:
    """The help of the command and of every verb, one section each."""
    top = help_text([])
    text = ["## `lens-embed`", "", "```text", top.rstrip(), "```", ""]
    for verb in sub_verbs(top):
        page = help_text([verb])
        text += [f"## `lens-embed {verb}`", "", "```text", page.rstrip(), "```", ""]
        for sub in sub_verbs(page):
            text += [
                f"### `lens-embed {verb} {sub}`",
                "",
                "```text",
                help_text([verb, sub]).rstrip(),
                "```",
                "",
            ]
    return "\n".join(text)


def write_all(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "api_names.md").write_text(api_names(), encoding="utf-8")
    (out / "cli.md").write_text(cli_reference(), encoding="utf-8")
    evaluation_chart(out / "evaluation_summary.png")
    sparse_chart(out / "sparse_ndcg_vs_active_dims.png")
    engine_chart(out / "engine_memory_vs_recall.png")
