"""Optional stacks: a missing extra is one error that names it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lens_embed.base.optional import MissingExtraError, require


def test_an_installed_module_of_an_extra_is_returned():
    assert require("json", "eval").dumps([1]) == "[1]"


def test_a_missing_extra_names_itself_and_how_to_install_it():
    with pytest.raises(MissingExtraError, match=r"lens-embed\[train\].*pip install 'lens-embed\[train\]'"):
        require("a_module_that_is_not_installed", "train")


def test_an_unknown_extra_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown extra 'gpu'"):
        require("json", "gpu")


def test_lora_without_peft_names_the_train_extra(tmp_path):
    # peft made unimportable for one interpreter: the first LoRA call says which extra to install.
    code = (
        "import sys; sys.modules['peft'] = None\n"
        "from torch import nn\n"
        "from lens_embed.training.lora import apply_lora\n"
        "try:\n"
        "    apply_lora(nn.Sequential(nn.Linear(2, 2)))\n"
        "except ImportError as error:\n"
        "    print(type(error).__name__, error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("MissingExtraError peft is not installed")
    assert "lens-embed[train]" in result.stdout


@pytest.mark.parametrize(
    ("blocked", "code", "extra"),
    [
        ("air_benchmark", "import lens_embed.evaluation.leaderboard.airbench", "airbench"),
        (
            "qdrant_client",
            "from lens_embed.serving.engine import ClientBackend; ClientBackend.connect(':memory:', 'c')",
            "cluster",
        ),
    ],
)
def test_airbench_and_qdrant_servers_name_their_extras(blocked, code, extra):
    script = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        f"try:\n    {code}\nexcept ImportError as error:\n    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert f"needs the lens-embed[{extra}] extra" in result.stdout
