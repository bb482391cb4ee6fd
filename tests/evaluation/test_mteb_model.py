"""A LENS model runs through mteb.evaluate like a registered one: real ModelMeta, loader, results."""

from __future__ import annotations

import shutil
from pathlib import Path

import mteb
import pytest
from mteb.cache import ResultCache
from sentence_transformers import SentenceTransformer

from lens_embed import build_lens_model
from lens_embed.base.defaults import TRAINING_RECORD, minilm_path
from lens_embed.base.storage import EXPORT_FOLDERS
from lens_embed.evaluation.encoders import MINILM_NAME, default_name, load_encoder, released_lens_meta
from lens_embed.evaluation.offline import offline_tasks
from lens_embed.evaluation.results import model_revision


@pytest.fixture(scope="module")
def small_lens_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lens") / "lens-minilm-k64"
    build_lens_model(minilm_path(), n_clusters=64, output_dir=path)
    return path


def test_model_meta_has_real_values(small_lens_dir: Path) -> None:
    encoder = load_encoder(small_lens_dir, adapted_from=MINILM_NAME)
    meta = encoder.mteb_model_meta
    assert meta.name == "lens-embed/lens-minilm-k64"
    assert meta.revision == model_revision(small_lens_dir) and len(meta.revision) == 12
    assert meta.embed_dim == encoder.model.get_embedding_dimension()
    parameters = sum(p.numel() for p in encoder.model.parameters())
    assert meta.n_parameters >= parameters > 20_000_000
    assert meta.max_tokens == encoder.model.max_seq_length
    assert meta.similarity_fn_name.value == "cosine" and meta.use_instructions is True
    assert meta.training_datasets == mteb.get_model_meta(MINILM_NAME).training_datasets
    assert meta.adapted_from == MINILM_NAME


def test_meta_loader_runs_in_mteb_evaluate(
    small_lens_dir: Path, small_data_dir: Path, tmp_path: Path
) -> None:
    meta = load_encoder(small_lens_dir).mteb_model_meta
    [task] = offline_tasks(small_data_dir, names=["SliceSTS16"])
    result = mteb.evaluate(meta, task, cache=ResultCache(tmp_path), encode_kwargs={"batch_size": 32})
    [task_result] = result.task_results
    assert 0.2 < task_result.get_score() <= 1.0  # an untrained lexicon head on MiniLM still tracks similarity
    assert (
        tmp_path / "results" / "lens-embed__lens-minilm-k64" / meta.revision / "SliceSTS16.json"
    ).is_file()


def test_revision_changes_with_the_weights(small_lens_dir: Path, copy_of) -> None:
    changed = copy_of(small_lens_dir)
    weights = next(changed.rglob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert model_revision(changed) != model_revision(small_lens_dir)


def test_revision_ignores_the_cpu_backend_exports(small_lens_dir: Path, copy_of) -> None:
    exported = copy_of(small_lens_dir)
    for folder in EXPORT_FOLDERS:  # what an export adds: derived files, config and weights alike
        (exported / folder).mkdir()
        (exported / folder / "config.json").write_text("{}")
        (exported / folder / "openvino_model.bin").write_bytes(b"weights")
    assert model_revision(exported) == model_revision(small_lens_dir)


def test_released_lens_models_get_a_loader() -> None:
    meta = released_lens_meta("yibinlei/LENS-d8000")
    assert meta.loader is not None and meta.embed_dim == 8000 and meta.use_instructions
    with pytest.raises(ValueError, match="not a released LENS model"):
        released_lens_meta("sentence-transformers/all-MiniLM-L6-v2")


def test_a_pruned_run_prunes_every_vector_and_files_its_results_as_an_experiment(
    small_lens_dir: Path, small_data_dir: Path, tmp_path: Path
) -> None:
    encoder = load_encoder(small_lens_dir, max_active_dims=8)
    meta = encoder.mteb_model_meta
    assert meta.experiment_kwargs == {"max_active_dims": 8}
    assert encoder.protocol()["max_active_dims"] == 8
    assert "max_active_dims" not in load_encoder(small_lens_dir).protocol()
    assert meta.load_model().max_active_dims == 8  # mteb's own loading path keeps the pruning
    embedded = []
    encode = encoder.encode

    def recording(*args, **kwargs):
        embedded.append(encode(*args, **kwargs))
        return embedded[-1]

    encoder.encode = recording
    [task] = offline_tasks(small_data_dir, names=["SliceSTS16"])
    pruned = mteb.evaluate(encoder, task, cache=ResultCache(tmp_path)).task_results[0].get_score()
    assert embedded and all(((vectors != 0).sum(axis=1) <= 8).all() for vectors in embedded)
    assert max((vectors != 0).sum(axis=1).max() for vectors in embedded) == 8
    whole = mteb.evaluate(load_encoder(small_lens_dir), task, cache=ResultCache(tmp_path / "whole"))
    assert pruned != whole.task_results[0].get_score()
    [result_file] = (tmp_path / "results").rglob("SliceSTS16.json")
    assert "max_active_dims" in str(result_file.relative_to(tmp_path))


def test_pruning_a_model_without_a_lexicon_is_refused() -> None:
    with pytest.raises(ValueError, match="prunes LENS lexicon vectors.*not a LENS model"):
        load_encoder(minilm_path(), max_active_dims=8)


def test_a_plain_folder_is_named_by_its_card_unless_lens_embed_trained_it(tmp_path: Path) -> None:
    model = SentenceTransformer(str(minilm_path()), device="cpu")
    copy = tmp_path / "minilm-ft"
    shutil.copytree(minilm_path(), copy)
    assert default_name(model, copy) == MINILM_NAME  # the card's usage line names the hub model
    (copy / TRAINING_RECORD).write_text("{}", encoding="utf-8")  # what `lens-embed train` leaves
    assert default_name(model, copy) == "local/minilm-ft"
