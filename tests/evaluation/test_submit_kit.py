"""The leaderboard kit: results checked by mteb's own loader and table, a registry entry whose loader
really loads the model, and an AIR-Bench zip read the way AIR-Bench's leaderboard reads it."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import zipfile
from pathlib import Path

import mteb
import pytest
from air_benchmark.evaluation_utils import Evaluator
from mteb.cache import ResultCache

from lens_embed.base.citation import LENS_CITATION
from lens_embed.commands import main as eval_main
from lens_embed.evaluation.encoders import load_encoder
from lens_embed.evaluation.instructions import load_instructions
from lens_embed.evaluation.leaderboard.airbench import LocalDataLoader
from lens_embed.evaluation.leaderboard.submit import (
    META_FILE,
    KitError,
    build_kit,
    check_airbench_zip,
    check_hub_name,
    check_revision,
    submitted_instructions,
)
from lens_embed.evaluation.offline import offline_tasks
from lens_embed.evaluation.runner import ModelRun, evaluate_runs

NAME = "lens-embed-test/lens-tiny"
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def results(
    tiny_lens: Path, data_dir: Path, small_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny LENS model through the offline suite (BIOSSES; the SciFact slice under a name mteb does
    not know)."""
    output = tmp_path_factory.mktemp("kit-results")
    encoder = load_encoder(tiny_lens, name=NAME, revision=REVISION)
    evaluate_runs([ModelRun(NAME, lambda: encoder)], offline_tasks(data_dir, names=["BIOSSES"]), output)
    return output


@pytest.fixture(scope="module")
def kit(results: Path, tiny_lens: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_kit(
        results,
        tiny_lens,
        tmp_path_factory.mktemp("kit") / "kit",
        license="apache-2.0",
        release_date="2026-11-27",
    )


def _registry_entry(module_file: Path) -> mteb.models.ModelMeta:
    """The one ModelMeta a registry module defines, imported as mteb's registry imports its modules."""
    spec = importlib.util.spec_from_file_location(f"registry_{module_file.parent.name}", module_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    [entry] = [value for value in vars(module).values() if isinstance(value, mteb.models.ModelMeta)]
    return entry


def _model_dir(root: Path) -> Path:
    return root / "results" / NAME.replace("/", "__") / REVISION


def test_kit_results_load_with_mtebs_loader_and_table(kit: Path, results: Path) -> None:
    copied = _model_dir(kit)
    from lens_embed.evaluation.results import PROTOCOL_FILE

    # the task files and model_meta.json; lens-embed's protocol record stays out (it is no task result)
    assert sorted(p.name for p in copied.iterdir()) == sorted(
        p.name for p in _model_dir(results).iterdir() if p.name != PROTOCOL_FILE
    )
    loaded = ResultCache(kit).load_results(models=[NAME], include_remote=False, validate_and_filter=True)
    [model] = loaded.model_results
    assert (model.model_name, model.model_revision, model.task_names) == (NAME, REVISION, ["BIOSSES"])
    table = (kit / "benchmark_table.md").read_text()
    assert NAME in table and "Mean (Task)" in table
    readme = (kit / "README.md").read_text()
    for step in ("embeddings-benchmark/results", "embeddings-benchmark/mteb", "AIR-Bench", META_FILE):
        assert step in readme


def test_registry_entry_is_complete_and_its_loader_loads_the_model(kit: Path, tiny_lens: Path) -> None:
    meta = _registry_entry(kit / META_FILE)
    assert (meta.name, meta.revision, str(meta.release_date)) == (NAME, REVISION, "2026-11-27")
    assert (meta.embed_dim, meta.max_tokens, meta.license, meta.open_weights) == (16, 512, "apache-2.0", True)
    assert meta.n_parameters > meta.n_embedding_parameters > 0 and meta.memory_usage_mb > 0
    assert meta.training_datasets == set()  # an untrained construction trains on nothing of its own
    assert meta.similarity_fn_name.value == "cosine" and "Sentence Transformers" in meta.framework
    assert meta.use_instructions and meta.citation == LENS_CITATION
    encoder = meta.loader(
        str(tiny_lens), revision=None, **meta.loader_kwargs
    )  # as ModelMeta.load_model calls it
    assert encoder.model.get_embedding_dimension() == 16


def test_registry_encoder_embeds_exactly_as_lens_embeds_encoder(
    kit: Path, tiny_lens: Path, data_dir: Path, small_data_dir: Path
) -> None:
    """A submitted task (BIOSSES) embeds with the authors' instruction the results were computed with;
    another task falls back to mteb's prompt, with plain documents for retrieval."""
    meta = _registry_entry(kit / META_FILE)
    registry = meta.loader(str(tiny_lens), revision=None, **meta.loader_kwargs)
    registry.mteb_model_meta = meta
    for instructions, names in (("authors", ["BIOSSES"]), ("mteb", ["SliceSciFact"])):
        ours = load_encoder(tiny_lens, name=NAME, revision=REVISION, instructions=instructions)
        tasks = (
            offline_tasks(data_dir, names=names)
            if names == ["BIOSSES"]
            else offline_tasks(small_data_dir, names=names)
        )
        scores = [
            {r.task_name: r.get_score() for r in mteb.evaluate(model, tasks, cache=None).task_results}
            for model in (registry, ours)
        ]
        assert set(scores[0]) == set(names)
        assert scores[0] == pytest.approx(scores[1], abs=1e-12)


def test_registry_entry_records_the_submitted_instructions(kit: Path) -> None:
    source = (kit / META_FILE).read_text()
    expected = load_instructions("authors").entries([mteb.get_task("BIOSSES").metadata])["BIOSSES"]
    assert expected.endswith(".") and repr(expected) in source
    assert "TASK_INSTRUCTIONS = {'BIOSSES':" in source
    assert _registry_entry(kit / META_FILE).loader_kwargs["prompts_dict"]["BIOSSES"] == expected


def _edit_result(root: Path, edit) -> None:
    path = _model_dir(root) / "BIOSSES.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["scores"].pop("test"), "split 'test' missing"),
        (lambda d: d["scores"].update(test=[]), "lacks subset"),
        (lambda d: d.update(dataset_revision="0" * 40), "dataset revision 0000"),
    ],
    ids=["missing-split", "missing-subset", "wrong-dataset-revision"],
)
def test_kit_fails_on_what_the_leaderboard_would_drop(
    results: Path, tiny_lens: Path, tmp_path: Path, edit, message: str
) -> None:
    damaged = tmp_path / "results"
    shutil.copytree(results, damaged)
    _edit_result(damaged, edit)
    with pytest.raises(KitError, match=message):
        build_kit(damaged, tiny_lens, tmp_path / "kit", license="apache-2.0")
    assert not (tmp_path / "kit").exists()  # nothing half-written


def test_kit_fails_on_a_revision_or_task_the_leaderboard_cannot_file(
    results: Path, tiny_lens: Path, small_data_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(KitError, match="0 model result folders match"):
        build_kit(results, tiny_lens, tmp_path / "kit", revision="f" * 40, license="apache-2.0")
    relabelled = tmp_path / "relabelled"
    shutil.copytree(results, relabelled)
    meta_file = _model_dir(relabelled) / "model_meta.json"
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "revision": "e" * 40}))
    with pytest.raises(KitError, match="model_meta.json names .* at revision 'eeee"):
        build_kit(relabelled, tiny_lens, tmp_path / "kit", license="apache-2.0")
    local = tmp_path / "local"
    shutil.copytree(results, local)
    encoder = load_encoder(tiny_lens, name=NAME, revision=REVISION)
    evaluate_runs(
        [ModelRun(NAME, lambda: encoder)], offline_tasks(small_data_dir, names=["SliceSTS16"]), local
    )
    with pytest.raises(KitError, match="SliceSTS16: not an mteb task"):
        build_kit(local, tiny_lens, tmp_path / "kit", license="apache-2.0")


def test_airbench_zip_is_read_as_airbench_reads_it(
    results: Path, tiny_lens: Path, airbench_data_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "air"
    assert (
        eval_main(
            [
                "evaluate",
                "airbench",
                "--model",
                str(tiny_lens),
                "--output",
                str(run),
                "--name",
                NAME,
                "--airbench-data",
                str(airbench_data_dir),
                "--top-k",
                "50",
            ]
        )
        == 0
    )
    kit = build_kit(results, tiny_lens, tmp_path / "kit", license="apache-2.0", airbench=run)
    [archive] = kit.glob("*.zip")
    assert archive.name == f"{NAME.replace('/', '__')}_NoReranker.zip"
    summary = check_airbench_zip(archive)
    assert (summary.files, summary.test_files, summary.datasets) == (2, 1, ("qa/science/en/scifact_slice",))
    # AIR-Bench's leaderboard unzips and runs Evaluator.evaluate_results on the folder:
    # same dev scores as ours
    unzipped = tmp_path / "unzipped"
    zipfile.ZipFile(archive).extractall(unzipped)
    scores = Evaluator(LocalDataLoader(airbench_data_dir)).evaluate_results(str(unzipped), split="dev")
    assert scores == json.loads((run / "airbench" / "dev_scores.json").read_text())


def test_airbench_zip_in_another_layout_is_refused(airbench_data_dir: Path, tmp_path: Path) -> None:
    wrapped = tmp_path / "wrapped.zip"
    with zipfile.ZipFile(wrapped, "w") as archive:
        archive.writestr("model/NoReranker/qa/science/en_scifact_slice_test.json", "{}")
    with pytest.raises(KitError, match="not AIR-Bench task types"):
        check_airbench_zip(wrapped)
    mislabelled = tmp_path / "mislabelled.zip"
    info = {
        "benchmark_version": "AIR-Bench_24.05",
        "task_type": "qa",
        "domain": "wiki",
        "language": "en",
        "dataset_name": "default",
        "split": "test",
        "search_results": {"q1": {"d1": 1.0}},
    }
    with zipfile.ZipFile(mislabelled, "w") as archive:
        archive.writestr("qa/science/en_default_test.json", json.dumps(info))
    with pytest.raises(KitError, match="domain 'wiki', expected 'science'"):
        check_airbench_zip(mislabelled)


# A name that closes the generated module's docstring and a licence that closes what the name opened:
# pasted into Python source and run, they write MARKER (issue 17).
PAYLOAD_NAME = "x\"\"\"\n__import__('pathlib').Path('marker').write_text('ran')\nZ = dict('''"
PAYLOAD_LICENSE = "''',#"


def _relabel(results: Path, **fields: str) -> None:
    [meta_file] = results.glob("results/*/*/model_meta.json")
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), **fields}))


def _submit(results: Path, model: Path, kit: Path, *options: str) -> int:
    return eval_main(
        ["evaluate", "submit-kit", str(results), "--model", str(model), "--output", str(kit), *options]
    )


def test_a_planted_results_folder_runs_no_code(
    results: Path, tiny_lens: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    planted = tmp_path / "planted"
    shutil.copytree(results, planted)
    _relabel(planted, name=f"org/{PAYLOAD_NAME}", license=PAYLOAD_LICENSE)
    monkeypatch.chdir(tmp_path)
    assert _submit(planted, tiny_lens, tmp_path / "kit") == 2
    assert "is not a valid hub model name" in capsys.readouterr().err
    _relabel(planted, name=NAME)  # a valid name: the licence is refused by mteb's own licence rule
    assert _submit(planted, tiny_lens, tmp_path / "kit") == 2
    assert "mteb's ModelMeta refuses the registry entry" in capsys.readouterr().err
    assert not (tmp_path / "marker").exists() and not (tmp_path / "kit").exists()


def test_a_planted_model_folder_and_card_run_no_code(
    tiny_lens: Path, data_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """The payload as a model folder's name (its results are named lens-embed/<folder>) and as its card's
    licence."""
    model = tmp_path / PAYLOAD_NAME
    shutil.copytree(tiny_lens, model)
    (model / "README.md").write_text(f"---\nlicense: {json.dumps(PAYLOAD_LICENSE)}\n---\n# planted\n")
    monkeypatch.chdir(tmp_path)
    assert (
        eval_main(
            [
                "evaluate",
                "offline",
                "--model",
                str(model),
                "--data",
                str(data_dir),
                "--tasks",
                "BIOSSES",
                "--baselines",
                "none",
                "--output",
                str(tmp_path / "results"),
            ]
        )
        == 0
    )
    assert _submit(tmp_path / "results", model, tmp_path / "kit") == 2
    assert f"'lens-embed/{PAYLOAD_NAME[:4]}" in capsys.readouterr().err  # the name is named, and refused
    _relabel(tmp_path / "results", name=NAME)
    assert _submit(tmp_path / "results", model, tmp_path / "kit") == 2  # the card's licence, refused
    assert f"license = {PAYLOAD_LICENSE!r}" in capsys.readouterr().err
    assert not (tmp_path / "marker").exists() and not (tmp_path / "kit").exists()


def test_a_name_starting_with_a_digit_gives_a_module_mtebs_registry_loads(
    results: Path, tiny_lens: Path, tmp_path: Path
) -> None:
    relabelled = tmp_path / "results"
    shutil.copytree(results, relabelled)
    _relabel(relabelled, name="org/7b-lens")
    kit = build_kit(relabelled, tiny_lens, tmp_path / "kit", license="apache-2.0")
    source = (kit / META_FILE).read_text()
    assert "\nmodel_7b_lens = ModelMeta(\n" in source
    # mteb's registry imports every module of model_implementations/ and collects its ModelMeta objects:
    # done here (on a kit built from a plain name) as it would be after the registry pull request
    package = tmp_path / "implementations"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copy(kit / META_FILE, package / META_FILE)
    monkeypatch_path = str(tmp_path)
    import importlib
    import sys

    sys.path.insert(0, monkeypatch_path)
    try:
        module = importlib.import_module(f"implementations.{Path(META_FILE).stem}")
    finally:
        sys.path.remove(monkeypatch_path)
        sys.modules.pop("implementations", None)
    [registered] = [value for value in vars(module).values() if isinstance(value, mteb.models.ModelMeta)]
    assert registered == _registry_entry(kit / META_FILE) and registered.name == "org/7b-lens"
    encoder = registered.loader(str(tiny_lens), revision=None, **registered.loader_kwargs)
    assert encoder.model.get_embedding_dimension() == 16


@pytest.mark.parametrize(
    ("check", "value", "valid"),
    [
        *[(check_hub_name, name, True) for name in ("org/7b-lens", "Org_1/LENS-d8000.v2")],
        *[
            (check_hub_name, name, False)
            for name in ("lens", "a/b/c", "org/x y", "org/x--y", "org/ünï", 'org/x"')
        ],
        *[(check_revision, revision, True) for revision in (REVISION, "main", "v1.0")],
        *[(check_revision, revision, False) for revision in ("refs/pr/1", "..", "", "a\nb")],
    ],
)
def test_names_and_revisions_follow_the_hubs_and_mtebs_rules(check, value: str, valid: bool) -> None:
    """A name is a hub model id (organization/model); a revision is one folder of the results layout."""
    if valid:
        assert check(value) == value
    else:
        with pytest.raises(KitError, match=f"{re.escape(repr(value))} is not a valid"):
            check(value)


def test_the_registry_entry_gives_each_submitted_task_what_its_results_were_embedded_with(
    tmp_path: Path,
) -> None:
    """The entry's prompts_dict holds, for each submitted task, the instructions of every side that its
    recorded source gave it: plain or instructed documents, and both sides of a pair task instructed."""
    from lens_embed.evaluation.results import PROTOCOL_FILE

    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "SciFact.json").write_text("{}")
    resolved = tmp_path / "resolved.json"
    protocol = folder / PROTOCOL_FILE
    protocol.write_text(json.dumps({"instructions": str(resolved)}))
    resolved.write_text(json.dumps({"SciFact": {"query": "Q", "document": None}}))
    assert submitted_instructions(folder) == {"SciFact": {"query": "Q", "document": ""}}
    resolved.write_text(json.dumps({"SciFact": {"query": "Q", "document": "D"}}))
    load_instructions.cache_clear()
    assert submitted_instructions(folder) == {"SciFact": {"query": "Q", "document": "D"}}
    protocol.write_text(json.dumps({"instructions": "authors"}))
    claim = "Given a scientific claim, retrieve documents that support or refute the claim."
    assert submitted_instructions(folder)["SciFact"] == {"query": claim, "document": ""}
    # a pair-classification task that declares a document input: the authors instruct both its sides
    (folder / "TERRa.V2.json").write_text("{}")
    terra = submitted_instructions(folder)["TERRa.V2"]
    assert isinstance(terra, str) and terra.endswith(".")
    protocol.write_text(json.dumps({"instructions": None}))
    with pytest.raises(KitError, match="computed without instructions"):
        submitted_instructions(folder)
