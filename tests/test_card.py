"""The LENS model card: what it says, Hugging Face-valid metadata, results from an mteb folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, ModelCardData

from lens_embed.base.citation import LENS_CITATION
from lens_embed.commands import main
from lens_embed.evaluation.data import DataDirError, resolve_data_dir
from lens_embed.evaluation.results import load_eval_rows, model_revision
from lens_embed.models.card import CARD_FILE, write_card


@pytest.fixture(scope="module")
def lens_model(tiny_lens: Path):
    from lens_embed import load_lens_model

    return load_lens_model(tiny_lens)


@pytest.fixture(scope="module")
def biosses_results(tiny_lens: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny LENS model through the offline suite on the real BIOSSES (an mteb results folder)."""
    from lens_embed.evaluation.encoders import load_encoder
    from lens_embed.evaluation.offline import offline_tasks
    from lens_embed.evaluation.runner import ModelRun, evaluate_runs

    try:
        data = resolve_data_dir()
    except DataDirError as error:
        pytest.skip(f"offline data not available: {error}")
    output = tmp_path_factory.mktemp("card-results")
    encoder = load_encoder(tiny_lens)
    evaluate_runs([ModelRun("tiny", lambda: encoder)], offline_tasks(data, names=["BIOSSES"]), output)
    return output


def test_card_metadata_is_hugging_face_valid(lens_model, tiny_lens: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_lens, folder)
    write_card(
        folder,
        lens_model.facts(),
        base_model="mistralai/Mistral-7B-v0.1",
        license="apache-2.0",
        model_id="org/lens-tiny",
    )
    card = ModelCard.load(folder / CARD_FILE)
    assert isinstance(card.data, ModelCardData)
    data = card.data.to_dict()
    assert data["library_name"] == "sentence-transformers"
    assert data["pipeline_tag"] in {"sentence-similarity", "feature-extraction"}
    assert data["base_model"] == "mistralai/Mistral-7B-v0.1"
    assert data["license"] == "apache-2.0"
    assert {"sentence-transformers", "lens"} <= set(data["tags"])
    assert "model-index" not in data  # no results given: no model-index
    assert data["lens_embed"] == {
        "n_clusters": 16,
        "hybrid": False,
        "bidirectional": True,
        "model_id": "org/lens-tiny",
    }


def test_card_says_what_the_model_is_and_how_to_use_it(lens_model, tiny_lens: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_lens, folder)
    text = write_card(folder, lens_model.facts(), model_id="org/lens-tiny").read_text(encoding="utf-8")
    assert "| K (vocabulary clusters = lexicon dimensions) | 16 |" in text
    assert "| backbone | mistral (decoder LLM) |" in text
    assert "bidirectional" in text and "| hybrid (lexicon + dense) | no" in text
    assert 'lens_embed.load_lens_model("org/lens-tiny")' in text
    assert 'SentenceTransformer("org/lens-tiny", trust_remote_code=True)' in text
    assert "sentence_transformers_model_id" not in text
    assert "<instruct>{instruction}\\n<query>{query}" in text
    for name in lens_model.prompts:
        assert f"| `{name}` |" in text
    assert "## Intended use and limits" in text and "No training is recorded" in text
    assert LENS_CITATION in text and "2025.acl-long.930" in LENS_CITATION


def test_hybrid_card_names_the_dense_part(tiny_mistral: Path, tmp_path: Path) -> None:
    from lens_embed import build_lens_model

    model = build_lens_model(
        tiny_mistral, n_clusters=16, output_dir=tmp_path / "hybrid", dense_pooling="mean"
    )
    text = write_card(tmp_path / "hybrid", model.facts()).read_text(encoding="utf-8")
    assert "| embedding dimension | 48 |" in text  # K + hidden
    assert "| hybrid (lexicon + dense) | yes: the L2-normalised mean-pooled hidden state" in text


def test_licence_comes_from_the_base_models_card(lens_model, tiny_lens: Path, tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    ModelCard(f"---\n{ModelCardData(license='mit').to_yaml()}\n---\n# base\n").save(base / CARD_FILE)
    folder = tmp_path / "model"
    shutil.copytree(tiny_lens, folder)
    write_card(folder, lens_model.facts(), base_model=str(base))
    assert ModelCard.load(folder / CARD_FILE).data.license == "mit"


def test_build_writes_the_lens_card_with_the_base_models_licence(tiny_mistral: Path, tmp_path: Path) -> None:
    from lens_embed import build_lens_model

    base = tmp_path / "base"
    shutil.copytree(tiny_mistral, base)
    ModelCard(f"---\n{ModelCardData(license='mit').to_yaml()}\n---\n# base\n").save(base / CARD_FILE)
    build_lens_model(base, n_clusters=16, output_dir=tmp_path / "lens")
    card = ModelCard.load(tmp_path / "lens" / CARD_FILE)
    assert (card.data.license, card.data.library_name) == ("mit", "sentence-transformers")
    assert card.data.base_model is None  # a local folder is no hub id to link
    assert card.data.to_dict()["lens_embed"]["n_clusters"] == 16
    assert "sentence_transformers_model_id" not in card.text


def test_training_data_and_recipe_are_written_and_kept(lens_model, tiny_lens: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_lens, folder)
    recipe = {"loss": "InfoNCE", "temperature": 0.02, "lora_r": 32}
    facts = lens_model.facts()
    write_card(
        folder, facts, base_model="org/base", training_datasets=["cfli/bge-full-data"], training_recipe=recipe
    )
    write_card(folder, facts)  # a rewrite keeps what the first card recorded
    card = ModelCard.load(folder / CARD_FILE)
    assert card.data.base_model == "org/base"
    assert card.data.datasets == ["cfli/bge-full-data"]
    assert "| temperature | 0.02 |" in card.text and "`cfli/bge-full-data`" in card.text


def test_card_command_fills_the_evaluation_table_from_mteb_results(
    tiny_lens: Path, biosses_results: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_lens, folder)
    assert main(["card", str(folder), "--results", str(biosses_results), "--base-model", "org/base"]) == 0
    card = ModelCard.load(folder / CARD_FILE)
    revision_dir = next((biosses_results / "results").glob(f"*/{model_revision(folder)}"))
    stored = json.loads((revision_dir / "BIOSSES.json").read_text())
    expected = round(100 * stored["scores"]["test"][0]["main_score"], 2)
    [result] = card.data.eval_results  # parsed back from model-index by huggingface_hub
    assert (result.dataset_type, result.dataset_split, result.metric_type) == (
        "mteb/biosses-sts",
        "test",
        "cosine_spearman",
    )
    assert result.dataset_revision == stored["dataset_revision"]
    assert result.metric_value == expected
    assert f"| BIOSSES | STS | test | default | cosine_spearman | {expected:.2f} |" in card.text
    assert card.data.base_model == "org/base"


def test_ambiguous_results_name_what_the_folder_holds(biosses_results: Path, tmp_path: Path) -> None:
    copy = tmp_path / "two"
    shutil.copytree(biosses_results, copy)
    [model_dir] = (copy / "results").iterdir()
    other = copy / "results" / "other__model"
    shutil.copytree(model_dir, other)
    for meta_file in other.glob("*/model_meta.json"):
        meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "name": "other/model"}))
    with pytest.raises(ValueError, match="2 model results match.*the folder holds"):
        load_eval_rows(copy)
    with pytest.raises(FileNotFoundError, match="not an mteb results folder"):
        load_eval_rows(tmp_path)


def test_a_damaged_result_file_is_named(tmp_path: Path) -> None:
    revision = tmp_path / "results" / "org__model" / "r1"
    revision.mkdir(parents=True)
    (revision / "model_meta.json").write_text(json.dumps({"name": "org/model", "revision": "r1"}))
    (revision / "BIOSSES.json").write_text(
        '{"dataset_revision": "d35", "task_name": "BIOSSES", "scores": {"te'
    )
    with pytest.raises(ValueError, match=r"BIOSSES\.json:1:.*not valid JSON.*a damaged task result"):
        load_eval_rows(tmp_path)


def test_the_card_says_what_an_over_long_text_loses(tiny_lens: Path, released: Path, tmp_path: Path) -> None:
    """Built models keep the EOS of an over-long text (as in training); converted released checkpoints
    drop it (as in the authors' evaluation), and their cards say so."""
    from lens_embed import convert_checkpoint

    convert_checkpoint(released, tmp_path / "converted")
    converted = (tmp_path / "converted" / CARD_FILE).read_text(encoding="utf-8")
    assert "EOS kept" not in converted and "the EOS is cut off with the rest" in converted
    assert "are truncated (EOS kept, as in training)" in (tiny_lens / CARD_FILE).read_text(encoding="utf-8")


def test_the_package_cites_lens_once() -> None:
    """One citation constant: no other module writes a bibtex entry of its own."""
    import lens_embed

    package = Path(lens_embed.__file__).parent
    elsewhere = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "citation.py"
        and ("@inproceedings" in path.read_text() or "@article" in path.read_text())
    ]
    assert elsewhere == []
