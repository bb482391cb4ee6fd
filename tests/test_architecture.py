"""The package's shape: a light face, no import cycles, making below using."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import lens_embed

PACKAGE = Path(lens_embed.__file__).parent
REPO = PACKAGE.parent


def test_importing_the_package_loads_neither_torch_nor_sentence_transformers():
    code = (
        "import sys, lens_embed, lens_embed.defaults, lens_embed.storage, lens_embed.safety\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'sentence_transformers'})\n"
        "print(','.join(heavy))\n"
        "assert callable(lens_embed.__getattr__) and 'load_lens_model' in dir(lens_embed)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_every_public_name_resolves():
    for name in lens_embed.__all__:
        assert getattr(lens_embed, name) is not None, name


def top_level_imports() -> dict[str, set[str]]:
    """Module -> the lens_embed modules it imports at module level (function-level imports excluded)."""
    graph = {}
    for file in PACKAGE.rglob("*.py"):
        module = ".".join(file.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        targets = set()
        for node in ast.parse(file.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lens_embed"):
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name.startswith("lens_embed"))
        graph[module] = targets
    return {module: {t for t in targets if t in graph and t != module} for module, targets in graph.items()}


def test_there_is_no_import_cycle():
    graph = top_level_imports()
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            assert state.get(target) != "open", " -> ".join([*path, module, target])
            if target not in state:
                visit(target, [*path, module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_making_sits_below_using():
    graph = top_level_imports()
    for maker in ("lens_embed.build", "lens_embed.convert", "lens_embed.backbone", "lens_embed.clustering"):
        assert "lens_embed.model" not in graph[maker], maker
    for light in ("lens_embed.defaults", "lens_embed.storage"):
        assert not graph[light], light


def test_the_public_api_documents_its_arguments():
    for name in ("build_lens_model", "load_lens_model", "encode", "convert_checkpoint", "default_model_path"):
        assert "Args:" in getattr(lens_embed, name).__doc__, name


def test_the_licence_is_an_spdx_expression():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^license = "Apache-2\.0"$', pyproject, re.MULTILINE)
    requires = re.search(r'^requires = \["setuptools>=(\d+)"\]$', pyproject, re.MULTILINE)
    assert requires and int(requires.group(1)) >= 77  # the first setuptools that reads SPDX expressions
