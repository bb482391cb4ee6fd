"""Self-contained LENS folders: plain sentence-transformers loads them with no lens-embed installed,
lens-embed recognises its own code (this version's or an earlier one's) without remote code, and refuses a
modified copy unless trusted."""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from huggingface_hub import ModelCard

from lens_embed import load_lens_model
from lens_embed.models import portable
from lens_embed.models.model import encode
from lens_embed.models.portable import (
    MODELING_FILE,
    _source_order,
    known_digests,
    modeling_digest,
    modeling_source,
)
from lens_embed.models.safety import UntrustedCodeError

TEXTS = [
    "what is the reserve bank of australia",
    "a man is playing a guitar on the street <query> while people watch",
]

# Runs in a fresh interpreter (-I: no PYTHONPATH, no user site, not the cwd) where importing lens_embed
# fails even though the venv installs it (editable): plain sentence-transformers and the folder only.
PLAIN_LOAD = r"""
import sys

class BlockLensEmbed:
    def find_spec(self, name, path=None, target=None):
        if name == "lens_embed" or name.startswith("lens_embed."):
            raise ImportError(f"{name} is blocked in this test")

sys.meta_path.insert(0, BlockLensEmbed())
import numpy as np
from sentence_transformers import SentenceTransformer

folder, out = sys.argv[1], sys.argv[2]
texts = [
    "what is the reserve bank of australia",
    "a man is playing a guitar on the street <query> while people watch",
]
model = SentenceTransformer(folder, trust_remote_code=True, device="cpu")
np.savez(out, query=model.encode_query(texts), document=model.encode_document(texts),
         sts=model.encode_query(texts, prompt_name="sts"))
assert not [name for name in sys.modules if name.split(".")[0] == "lens_embed"]
print(type(model[1]).__module__)
"""


def plain_embeddings(folder: Path, tmp_path: Path) -> tuple[dict[str, np.ndarray], str]:
    out = tmp_path / "plain.npz"
    done = subprocess.run(
        [sys.executable, "-I", "-c", PLAIN_LOAD, str(folder), str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(out)), done.stdout.strip().splitlines()[-1]


def lens_embeddings(folder: Path) -> dict[str, np.ndarray]:
    model = load_lens_model(folder, device="cpu")
    return {
        "query": encode(model, TEXTS, query=True),
        "document": encode(model, TEXTS),
        "sts": model.encode_query(TEXTS, prompt_name="sts"),
    }


@pytest.fixture(scope="module")
def converted(released: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lens_embed import convert_checkpoint

    out = tmp_path_factory.mktemp("converted") / "lens"
    convert_checkpoint(released, out)
    return out


@pytest.mark.parametrize("made_by", ["build", "convert"])
def test_saved_folders_carry_their_modules_code(made_by: str, tiny_lens: Path, converted: Path) -> None:
    folder = tiny_lens if made_by == "build" else converted
    types = [entry["type"] for entry in json.loads((folder / "modules.json").read_text())]
    assert types == ["modeling_lens.LensTransformer", "modeling_lens.LexiconPooling"]
    code = (folder / MODELING_FILE).read_text(encoding="utf-8")
    assert code == modeling_source()
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(code))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert not [name for name in imported if name.split(".")[0] == "lens_embed"]
    card = ModelCard.load(folder / "README.md")  # the LENS card, not sentence-transformers' generic one
    assert card.data.library_name == "sentence-transformers" and "lens" in card.data.tags


@pytest.mark.parametrize("made_by", ["build", "convert"])
def test_plain_sentence_transformers_gives_identical_embeddings_without_lens_embed(
    made_by: str, tiny_lens: Path, converted: Path, tmp_path: Path
) -> None:
    folder = tiny_lens if made_by == "build" else converted
    plain, module = plain_embeddings(folder, tmp_path)
    assert module.startswith("transformers_modules.")  # the folder's own modeling_lens.py ran
    ours = lens_embeddings(folder)
    for key in ("query", "document", "sts"):
        np.testing.assert_array_equal(plain[key], ours[key], err_msg=key)


def test_lens_embed_loads_its_own_code_without_remote_code(tiny_lens: Path) -> None:
    model = load_lens_model(tiny_lens)
    assert [type(module).__module__ for module in model] == ["lens_embed.modules", "lens_embed.modules"]


def test_a_modified_copy_is_refused_unless_trusted(tiny_lens: Path, tmp_path: Path) -> None:
    folder = tmp_path / "modified"
    shutil.copytree(tiny_lens, folder)
    with (folder / MODELING_FILE).open("a", encoding="utf-8") as handle:
        handle.write("\nprint('this folder runs its own code')\n")
    with pytest.raises(
        UntrustedCodeError, match="modeling_lens.py, which is not code that any lens-embed version wrote"
    ):
        load_lens_model(folder)
    trusted = load_lens_model(folder, trust_remote_code=True)
    assert type(trusted[1]).__module__.startswith("transformers_modules.")
    np.testing.assert_array_equal(encode(trusted, TEXTS), encode(load_lens_model(tiny_lens), TEXTS))


def test_this_version_registers_the_modeling_file_it_writes() -> None:
    assert modeling_digest() in known_digests(), (
        "the generated modeling_lens.py changed: "
        f'append "{modeling_digest()}" to lens_embed/modeling_digests.json'
    )


def test_a_folder_written_by_an_earlier_version_loads_with_the_installed_classes(
    tiny_lens: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "earlier"
    shutil.copytree(tiny_lens, folder)
    earlier = modeling_source().replace(
        "from __future__ import annotations", "from __future__ import annotations\n# earlier", 1
    )
    (folder / MODELING_FILE).write_text(earlier, encoding="utf-8")
    with pytest.raises(UntrustedCodeError):
        load_lens_model(folder)  # not (yet) a digest any lens-embed wrote
    digest = hashlib.sha256(earlier.encode("utf-8")).hexdigest()
    monkeypatch.setattr(portable, "known_digests", lambda: {**known_digests(), digest: "lens-embed 0.0.1"})
    model = load_lens_model(folder)
    assert [type(module).__module__ for module in model] == ["lens_embed.modules", "lens_embed.modules"]
    np.testing.assert_array_equal(encode(model, TEXTS), encode(load_lens_model(tiny_lens), TEXTS))


def test_a_missing_modeling_file_is_refused_unless_trusted(tiny_lens: Path, tmp_path: Path) -> None:
    folder = tmp_path / "missing"
    shutil.copytree(tiny_lens, folder)
    (folder / MODELING_FILE).unlink()
    with pytest.raises(UntrustedCodeError, match="modeling_lens.LensTransformer"):
        load_lens_model(folder)


def test_old_folders_naming_lens_embed_modules_keep_loading(tiny_lens: Path, tmp_path: Path) -> None:
    folder = tmp_path / "old"
    shutil.copytree(tiny_lens, folder)
    (folder / MODELING_FILE).unlink()
    entries = json.loads((folder / "modules.json").read_text())
    for entry in entries:
        entry["type"] = entry["type"].replace("modeling_lens.", "lens_embed.modules.")
    (folder / "modules.json").write_text(json.dumps(entries))
    old = load_lens_model(folder)
    np.testing.assert_array_equal(
        encode(old, TEXTS, query=True), encode(load_lens_model(tiny_lens), TEXTS, query=True)
    )
    old.save(str(tmp_path / "resaved"))  # saving it again makes it self-contained
    assert (tmp_path / "resaved" / MODELING_FILE).read_text(encoding="utf-8") == modeling_source()


def test_push_to_hub_uploads_a_self_contained_folder(
    tiny_lens: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub
    import sentence_transformers.base.model as st_model

    uploaded = tmp_path / "uploaded"

    def create_repo(self, repo_id, **kwargs):
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        shutil.copytree(folder_path, uploaded)
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0", pr_url=None)

    model = load_lens_model(tiny_lens)
    reference = lens_embeddings(tiny_lens)  # before the hub is faked: loading reads files through it too
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(
        st_model, "load_file_path", lambda *args, **kwargs: None
    )  # the repository has no card yet
    model.push_to_hub("lens-org/lens-tiny")
    files = sorted(p.relative_to(uploaded).as_posix() for p in uploaded.rglob("*") if p.is_file())
    expected = {
        "README.md",
        MODELING_FILE,
        "modules.json",
        "config.json",
        "config_sentence_transformers.json",
        "sentence_bert_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "1_LexiconPooling/config.json",
        "1_LexiconPooling/model.safetensors",
    }
    assert expected <= set(files), files
    card = (uploaded / "README.md").read_text(encoding="utf-8")
    assert 'SentenceTransformer("lens-org/lens-tiny", trust_remote_code=True)' in card
    plain, _ = plain_embeddings(uploaded, tmp_path)
    for key in ("query", "document", "sts"):
        np.testing.assert_array_equal(plain[key], reference[key], err_msg=key)


def test_code_that_cannot_travel_is_refused_when_generating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lazy_lens_module.py").write_text(
        "def query_token():\n    from lens_embed.base.prompts import QUERY_TOKEN\n    return QUERY_TOKEN\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match="lazy_lens_module:2: imports lens-embed inside a function"):
        _source_order("lazy_lens_module")
