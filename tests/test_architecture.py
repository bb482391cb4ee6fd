"""The package's shape: a light face, declared layers, imports (inside functions too) only going down."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import lens_embed

PACKAGE = Path(lens_embed.__file__).parent
REPO = PACKAGE.parent

# The house, bottom to top: a module may import (at module level or inside a function, for type checking
# or at run time) only modules of its own layer or of a layer below. A name ending in "." stands for every
# module of that package. The docs' Architecture page (docs/architecture.md) draws the same layers.
LAYERS: list[tuple[str, ...]] = [
    # 0. base/, light (no torch): constants, files, the input format, options; the package faces resolve their
    #    names lazily
    ("lens_embed", "lens_embed.evaluation", "lens_embed.training", "lens_embed.base", "lens_embed.base."),
    # 1. models/, the pieces: backbone preparation and weight files, clustering, the pooling equation, what a
    #    folder asks to run
    (
        "lens_embed.models",
        "lens_embed.models.backbone",
        "lens_embed.models.clustering",
        "lens_embed.models.pooling",
        "lens_embed.models.safety",
    ),
    # 2. the sentence-transformers modules (their source becomes modeling_lens.py; saved folders name
    #    lens_embed.modules, so it stays at the top of the package)
    ("lens_embed.modules",),
    # 3. models/, the saved folder, on plain data: the generated modeling file, the card
    ("lens_embed.models.portable", "lens_embed.models.card"),
    # 4. models/, the one LENS model class, the one router, the facts of a model object
    ("lens_embed.models.model",),
    # 5. models/, making models
    (
        "lens_embed.models.build",
        "lens_embed.models.convert",
        "lens_embed.models.embedded",
        "lens_embed.models.exported",
    ),
    # 6. models/, the one loader and its checks (a released name is converted once: above convert)
    ("lens_embed.models.loading",),
    # 7. using models: models/ (batching, the SparseEncoder folder, exports) and serving/ (search and serving)
    (
        "lens_embed.models.batching",
        "lens_embed.models.sparse",
        "lens_embed.models.export",
        "lens_embed.serving",
        "lens_embed.serving.",
    ),
    # 8. evaluation and training (neither imports the other)
    ("lens_embed.evaluation.", "lens_embed.training."),
    # 9. the leaderboard tools: comparisons with published scores, the harness check, AIR-Bench, the kit
    ("lens_embed.evaluation.leaderboard.",),
    # 10. the entry points: the command and its verbs, the launchers' entry
    ("lens_embed.commands", "lens_embed.commands.", "lens_embed.training.__main__"),
]
# Imports that run back up the layers, (importer, imported) -> why; at most two, each named in the docs.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}
# Package faces: importing a public name through one would hide which module it comes from.
FACES = ("lens_embed", "lens_embed.evaluation", "lens_embed.training")


def module_names() -> dict[str, Path]:
    """Every module of the package by dotted name (a package's ``__init__`` is the package itself)."""
    return {
        ".".join(file.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): file
        for file in sorted(PACKAGE.rglob("*.py"))
    }


def imports() -> dict[str, dict[str, list[int]]]:
    """Module -> the package modules it imports -> the lines, every import of the file (inside functions
    and ``TYPE_CHECKING`` blocks included); ``from pkg import name`` counts as pkg.name when that is a
    module."""
    modules = module_names()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, list[int]]] = {}
    for module, file in modules.items():
        found: dict[str, list[int]] = {}
        package = module if file.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [owner(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                targets = [owner(f"{base}.{alias.name}") or owner(base) for alias in node.names]
            else:
                continue
            for target in targets:
                if target and target != module:
                    found.setdefault(target, []).append(node.lineno)
        graph[module] = found
    return graph


def layer_of(module: str) -> int:
    """The declared layer of a module: an exact name wins over a package prefix, a longer prefix (a
    subpackage) over a shorter one."""
    exact = [index for index, names in enumerate(LAYERS) if module in names]
    if exact:
        return exact[0]
    prefixed = [
        (len(name), index)
        for index, names in enumerate(LAYERS)
        for name in names
        if name.endswith(".") and module.startswith(name)
    ]
    assert prefixed, f"{module} has no declared layer: add it to LAYERS here and to docs/architecture.md"
    return max(prefixed)[1]


def heavy_modules_after(code: str) -> list[str]:
    """Which of torch and sentence-transformers a fresh interpreter has loaded after running ``code``."""
    probe = (
        code + "\nprint(','.join(sorted({m.split('.')[0] for m in sys.modules} "
        "& {'torch', 'sentence_transformers'})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import sys\n" + probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    return [name for name in result.stdout.strip().split(",") if name]


def test_importing_the_package_loads_neither_torch_nor_sentence_transformers():
    assert (
        heavy_modules_after(
            "import lens_embed, lens_embed.base.defaults, lens_embed.base.storage, "
            "lens_embed.models.safety, lens_embed.base.inputs\n"
            "assert callable(lens_embed.__getattr__) and 'load_lens_model' in dir(lens_embed)"
        )
        == []
    )


def test_reading_what_a_folder_asks_to_run_loads_neither_torch_nor_sentence_transformers():
    """safety reads JSON only; the package's own classes are the caller's argument, not an import of it."""
    assert (
        heavy_modules_after(
            "from lens_embed.base.defaults import minilm_path\n"
            "from lens_embed.models.safety import code_references\n"
            "assert code_references(minilm_path(), ()) == []"
        )
        == []
    )


def test_every_public_name_resolves():
    for name in lens_embed.__all__:
        assert getattr(lens_embed, name) is not None, name


def test_every_module_has_a_declared_layer():
    for module in module_names():
        layer_of(module)
    declared = {name for names in LAYERS for name in names if not name.endswith(".")}
    assert declared <= set(module_names()), declared - set(module_names())  # no stale entry


def test_there_is_no_import_circle():
    graph = imports()
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            assert state.get(target) != "open", "import circle: " + " -> ".join([*path, module, target])
            if target not in state:
                visit(target, [*path, module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_imports_only_go_down_the_layers():
    assert len(ALLOWED_UPWARD) <= 2
    upward = {
        (module, target): lines
        for module, targets in imports().items()
        for target, lines in targets.items()
        if layer_of(target) > layer_of(module)
    }
    unexplained = {
        f"{a} -> {b} (lines {lines})" for (a, b), lines in upward.items() if (a, b) not in ALLOWED_UPWARD
    }
    assert not unexplained, f"imports running up the layers: {sorted(unexplained)}"
    assert set(ALLOWED_UPWARD) <= set(upward), "an allowed upward import that no longer exists: remove it"


def test_no_module_imports_a_public_name_through_a_package_face():
    modules = set(module_names())
    through_faces = []
    for module, file in module_names().items():
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in FACES:
                names = [
                    a.name
                    for a in node.names
                    if f"{node.module}.{a.name}" not in modules and a.name != "__version__"
                ]
                through_faces += [
                    f"{module}:{node.lineno}: from {node.module} import {name}" for name in names
                ]
    assert through_faces == []


def test_the_architecture_page_draws_the_declared_layers():
    """Every module of a declared layer is named in the docs' layer drawing, in the layer's order."""
    page = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    drawing = page[page.index("Imports only go downwards") :]
    lines = [line for line in drawing.splitlines() if re.match(r"^ *\d+\. ", line)][: len(LAYERS)]
    assert len(lines) == len(LAYERS)
    for index, (names, line) in enumerate(zip(LAYERS, lines, strict=True)):
        assert line.strip().startswith(f"{index}. "), line
        for name in names:
            short = name.removeprefix("lens_embed.").removeprefix("lens_embed") or "lens_embed"
            short = short.rstrip(".") + ("/" if name.endswith(".") else "")
            assert f"`{short}`" in line, (
                f"layer {index}: {short} missing from the drawing in docs/architecture.md"
            )


def test_the_public_api_documents_its_arguments():
    for name in ("build_lens_model", "load_lens_model", "encode", "convert_checkpoint", "default_model_path"):
        assert "Args:" in getattr(lens_embed, name).__doc__, name


def test_the_licence_is_an_spdx_expression():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^license = "Apache-2\.0"$', pyproject, re.MULTILINE)
    requires = re.search(r'^requires = \["setuptools>=(\d+)"\]$', pyproject, re.MULTILINE)
    assert requires and int(requires.group(1)) >= 77  # the first setuptools that reads SPDX expressions
