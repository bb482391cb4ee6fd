"""The leaderboard submission kit (:func:`build_kit`; on the command line ``lens-embed evaluate submit-kit
RESULTS --model MODEL --output KIT``).

What the MTEB and AIR-Bench leaderboards need, written and checked offline:

- ``KIT/results/<org__model>/<revision>/``: the model's result files in the layout of the
  embeddings-benchmark/results repository, checked by loading them back with mteb's own results
  loader and building mteb's own benchmark table; anything the leaderboard would drop (a missing
  split or subset, a task mteb does not know, a dataset or model revision that does not match) stops
  the kit with the reason.
- ``KIT/mteb_model_meta.py``: the ``ModelMeta`` entry for mteb's model registry, data only: mteb's own
  ``InstructSentenceTransformerModel`` as its loader (plain sentence-transformers with
  ``trust_remote_code=True``), with the arguments evaluation built that same class with
  (:func:`lens_embed.evaluation.encoders.instruct_kwargs`: the LENS template, and the ``prompts_dict``
  entries of the instruction source the results recorded, for each submitted task), the fields written by
  mteb's own ``ModelMeta.to_python``. The name and revision are checked against the hub's and mteb's
  rules and every field against mteb's ``ModelMeta`` before anything is written.
- ``KIT/<retriever>_NoReranker.zip`` (with ``--airbench``): the AIR-Bench search results, laid out as
  AIR-Bench's own ``zip_results.py`` does and checked the way its leaderboard reads them.
- ``KIT/README.md``: the submission steps.
"""

from __future__ import annotations

import datetime
import json
import keyword
import pprint
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mteb
from huggingface_hub.utils import HFValidationError, validate_repo_id

# Private on purpose (registered()): mteb has no public way to add a registry entry (MODEL_REGISTRY is built
# once at import), and its table reads the registry through these caches, which only cache_clear() refreshes.
from mteb.benchmarks import _create_table
from mteb.cache import ResultCache
from mteb.models import ModelMeta
from mteb.models.instruct_wrapper import InstructSentenceTransformerModel
from mteb.models.model_implementations import MODEL_REGISTRY
from pydantic import ValidationError

from lens_embed.base.citation import LENS_CITATION
from lens_embed.base.defaults import AIRBENCH_VERSION
from lens_embed.base.optional import require
from lens_embed.evaluation.encoders import build_model_meta, instruct_kwargs
from lens_embed.evaluation.instructions import Prompt, load_instructions
from lens_embed.evaluation.results import PROTOCOL_FILE, task_result_files
from lens_embed.models.card import existing_provenance
from lens_embed.models.loading import load_lens_model

META_FILE = "mteb_model_meta.py"
# AIR-Bench's folder of a retriever's search results without a reranker (its evaluation scripts' name).
NO_RERANKER = "NoReranker"
TABLE_FILE = "benchmark_table.md"
INSTRUCTIONS_NAME = "TASK_INSTRUCTIONS"
# Fields a registry entry must state; mteb's CI and leaderboard filters read every one of them.
REQUIRED_META_FIELDS = (
    "name",
    "revision",
    "release_date",
    "n_parameters",
    "memory_usage_mb",
    "embed_dim",
    "max_tokens",
    "license",
    "open_weights",
    "similarity_fn_name",
    "framework",
    "use_instructions",
    "training_datasets",
)
# A hub commit, branch or tag that is also one folder name of the results layout (<org__model>/<revision>/).
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# What a registry module imports: mteb's own objects, named in the entry.
_REGISTRY_IMPORTS = {
    "mteb.models.instruct_wrapper": ("InstructSentenceTransformerModel",),
    "mteb.models.model_meta": ("ModelMeta", "ScoringFunction"),
}


def not_an_mteb_task_message(name: str) -> str:
    """The one wording of a result the leaderboard cannot file (e.g. a local offline-suite task)."""
    return (
        f"{name}: not an mteb task (a local offline-suite folder?), so the leaderboard has no column for it"
    )


class KitError(ValueError):
    """The results, metadata or AIR-Bench files would not be taken by the leaderboard as they are."""


@dataclass(frozen=True)
class AirZipSummary:
    """What an AIR-Bench zip holds, as the leaderboard's reader sees it."""

    path: Path
    files: int
    test_files: int
    datasets: tuple[str, ...]


def model_results_dir(results: str | Path, name: str | None = None, revision: str | None = None) -> Path:
    """``RESULTS/results/<org__model>/<revision>/`` of one model; a clear error if it is not exactly one."""
    root = Path(results) / "results"
    if not root.is_dir():
        raise KitError(f"{results} is not an mteb results folder (no {root})")
    found = [p.parent for p in sorted(root.glob("*/*/model_meta.json"))]
    matching = [
        folder
        for folder in found
        if (name is None or _read_json(folder / "model_meta.json").get("name") == name)
        and (revision is None or folder.name == revision)
    ]
    if len(matching) != 1:
        listed = ", ".join(f"{p.parent.name}/{p.name}" for p in found) or "none"
        raise KitError(
            f"{root}: {len(matching)} model result folders match name={name!r} revision={revision!r} "
            f"(found: {listed}); pass --name and/or --revision"
        )
    return matching[0]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise KitError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from error


def complete_model_meta(
    model_path: str | Path,
    results_meta: dict[str, Any],
    *,
    name: str | None = None,
    revision: str | None = None,
    release_date: str | None = None,
    license: str | None = None,
    training_datasets: Sequence[str] | None = None,
    public_training_code: str | None = None,
    public_training_data: str | None = None,
    reference: str | None = None,
) -> ModelMeta:
    """The registry ``ModelMeta`` (without its loader): measured on the model, named and dated as the
    results were, completed by what only the submitter knows, and validated by mteb's ``ModelMeta``.

    The name must be a hub model id (``organization/model``) and the revision one folder name, checked
    before the model is loaded; any field mteb's ``ModelMeta`` refuses (a licence that is neither one of
    its licence ids nor a URL, a date, a URL...) stops the kit with the field named."""
    name = check_hub_name(name or results_meta.get("name"))
    revision = check_revision(revision or results_meta.get("revision"))
    model = load_lens_model(model_path, device="cpu")
    measured = build_model_meta(model, model_path, name=name, revision=revision)
    provenance = existing_provenance(model_path) if Path(model_path).is_dir() else None
    recorded_training = results_meta.get("training_datasets")
    datasets = (
        set(training_datasets)
        if training_datasets is not None
        else (set(recorded_training) if recorded_training is not None else measured.training_datasets)
    )
    if datasets is None and provenance is not None and not provenance.training_recipe:
        datasets = set()  # an untrained LENS construction: no training data of its own
    return validated_meta(
        measured,
        loader=None,
        loader_kwargs={},
        release_date=release_date or results_meta.get("release_date") or datetime.date.today().isoformat(),
        license=license or results_meta.get("license") or (provenance.license if provenance else None),
        training_datasets=datasets,
        public_training_code=public_training_code or measured.public_training_code,
        public_training_data=public_training_data or measured.public_training_data,
        reference=reference or measured.reference or f"https://huggingface.co/{name}",
        citation=LENS_CITATION,
        n_embedding_parameters=model[0].auto_model.get_input_embeddings().weight.numel(),
    )


def check_hub_name(name: Any) -> str:
    """``name`` if it is a model id the registry entry can load: mteb's rule (``organization/model``) and
    the hub's (``huggingface_hub.utils.validate_repo_id``: ASCII letters, digits, ``-``, ``_``, ``.``)."""
    rule = (
        "organization/model, ASCII letters, digits, '-', '_' and '.' (the hub's and mteb's rule); pass --name"
    )
    if not isinstance(name, str) or name.count("/") != 1 or not name.isascii():
        raise KitError(f"{name!r} is not a valid hub model name: expected {rule}")
    try:
        validate_repo_id(name)
    except HFValidationError as error:
        raise KitError(f"{name!r} is not a valid hub model name ({error}): expected {rule}") from None
    return name


def check_revision(revision: Any) -> str:
    """``revision`` if it is a hub commit, branch or tag that is one folder name of the results layout."""
    if not isinstance(revision, str) or not _REVISION.fullmatch(revision):
        raise KitError(
            f"{revision!r} is not a valid model revision: "
            "expected a hub commit, branch or tag of ASCII letters, "
            "digits, '.', '_' and '-' (no '/'); pass --revision"
        )
    return revision


def validated_meta(meta: ModelMeta, **updates: Any) -> ModelMeta:
    """``meta`` with ``updates``, built anew through mteb's ``ModelMeta`` validators (``model_copy``
    would take the values unchecked)."""
    fields = {**{field: getattr(meta, field) for field in type(meta).model_fields}, **updates}
    try:
        return ModelMeta(**fields)
    except ValidationError as error:
        refused: dict[str, list[str]] = {}  # field -> why, one reason per type the field may have
        for problem in error.errors():
            field = str(problem["loc"][0]) if problem["loc"] else "ModelMeta"
            reason = problem["msg"] if len(problem["msg"]) <= 120 else problem["msg"][:120] + "..."
            refused.setdefault(f"{field} = {problem['input']!r}", []).append(reason)
        problems = [f"{field}: {'; or '.join(reasons)}" for field, reasons in refused.items()]
        raise KitError(
            f"mteb's ModelMeta refuses the registry entry of {meta.name!r}:\n  " + "\n  ".join(problems)
        ) from None


def submitted_instructions(results_dir: Path) -> dict[str, Prompt]:
    """The registry entry's ``prompts_dict``: the entries of the instruction source the results recorded
    (the authors' map, a file, or mteb's prompts) that mteb's lookup takes for each submitted task, so the
    entry gives every submitted task what evaluation gave it (:meth:`Instructions.entries`)."""
    protocol = results_dir / PROTOCOL_FILE
    spec = _read_json(protocol).get("instructions") if protocol.is_file() else "authors"
    if spec is None:
        raise KitError(f"{protocol}: the results were computed without instructions (not a LENS model?)")
    tasks = []
    for file in task_result_files(results_dir):
        try:
            tasks.append(mteb.get_task(file.stem).metadata)
        except KeyError:
            raise KitError(not_an_mteb_task_message(file.stem)) from None
    return load_instructions(spec).entries(tasks)


def registry_meta(meta: ModelMeta, prompts: dict[str, Prompt]) -> ModelMeta:
    """The registry entry: ``meta`` loaded by mteb's own ``InstructSentenceTransformerModel`` with the
    arguments evaluation used (:func:`~lens_embed.evaluation.encoders.instruct_kwargs`) over ``prompts``
    (from :func:`submitted_instructions`), validated by mteb's ``ModelMeta``."""
    missing = [field for field in REQUIRED_META_FIELDS if getattr(meta, field) is None]
    if missing:
        options = ", ".join(f"--{field.replace('_', '-')}" for field in missing)
        raise KitError(
            f"the ModelMeta of {meta.name} lacks {', '.join(missing)}: pass {options} to submit-kit"
        )
    return validated_meta(
        meta, loader=InstructSentenceTransformerModel, loader_kwargs=instruct_kwargs(prompts)
    )


def registry_variable(name: str) -> str:
    """The module-level name of the entry: the model part of ``name`` as a Python identifier."""
    variable = "".join(c if c.isascii() and c.isalnum() else "_" for c in name.split("/")[-1].lower())
    if not variable.isidentifier() or keyword.iskeyword(variable):
        variable = f"model_{variable}"
    return variable


def registry_module(meta: ModelMeta) -> str:
    """A module for mteb's ``mteb/models/model_implementations/``: data only, built from a validated
    ``ModelMeta`` (:func:`registry_meta`). Every value is written as a Python literal (mteb's
    ``ModelMeta.to_python``, ``repr`` and ``pprint``); only names of mteb's own objects are not."""
    kwargs = dict(meta.loader_kwargs)
    instructions = kwargs.pop("prompts_dict")
    entry = meta.model_copy(update={"loader": None, "loader_kwargs": {}}).to_python()
    arguments = "".join(f"        {key}={value!r},\n" for key, value in kwargs.items())
    arguments += f"        prompts_dict={INSTRUCTIONS_NAME},\n"
    entry = _replace_field(entry, "loader=None", f"loader={meta.loader.__name__}")
    entry = _replace_field(entry, "loader_kwargs={}", f"loader_kwargs=dict(\n{arguments}    )")
    imports = [f"from {module} import {', '.join(names)}" for module, names in _REGISTRY_IMPORTS.items()]
    docstring = (
        f"mteb registry entry for {meta.name}, written by lens-embed evaluate submit-kit: "
        "data and mteb's own loader."
    )
    return "\n".join(
        [
            repr(docstring),
            "",
            *imports,
            "",
            "# The instruction of each submitted task (or of its type) its results were computed with, "
            "as mteb's lookup takes it;",
            "# documents of retrieval-type tasks are plain. Other tasks get mteb's task prompts.",
            f"{INSTRUCTIONS_NAME} = {pprint.pformat(instructions, width=110)}",
            "",
            f"{registry_variable(str(meta.name))} = {entry}",
            "",
        ]
    )


def _replace_field(entry: str, written: str, replacement: str) -> str:
    """Replace the line of one field in ``ModelMeta.to_python`` output (its strings are single-line reprs,
    so a whole line can only be a field)."""
    line = f"\n    {written},\n"
    if entry.count(line) != 1:
        raise KitError(
            f"mteb's ModelMeta.to_python wrote {written!r} {entry.count(line)} times, expected once"
        )
    return entry.replace(line, f"\n    {replacement},\n")


def check_results(kit: str | Path, meta: ModelMeta) -> str:
    """Load the kit's results with mteb's own loader and build mteb's own benchmark table of them.

    Fails on what the leaderboard would drop or misfile: a task mteb does not know, a result whose
    dataset revision is not the task's, a missing split or subset, a model name or revision that does
    not match the registry entry. Returns the table as markdown.
    """
    folder = Path(kit) / "results" / meta.model_name_as_path() / str(meta.revision)
    recorded = _read_json(folder / "model_meta.json") if (folder / "model_meta.json").is_file() else {}
    if recorded.get("name") != meta.name or recorded.get("revision") != meta.revision:
        raise KitError(
            f"{folder / 'model_meta.json'} names {recorded.get('name')!r} "
            f"at revision {recorded.get('revision')!r}, "
            f"the registry entry {meta.name!r} at {meta.revision!r}"
        )
    loaded = ResultCache(kit).load_results(models=[meta], include_remote=False, require_model_meta=True)
    results = [result for model in loaded.model_results for result in model.task_results]
    if not results:
        raise KitError(
            f"mteb's results loader finds no results for {meta.name} at revision {meta.revision} in {folder}"
        )
    problems: list[str] = []
    tasks = []
    for result in results:
        try:
            task = mteb.get_task(result.task_name)
        except KeyError:
            problems.append(not_an_mteb_task_message(result.task_name))
            continue
        tasks.append(task)
        expected = task.metadata.dataset.get("revision")
        if result.dataset_revision != expected:
            problems.append(
                f"{result.task_name}: dataset revision {result.dataset_revision}, mteb's task has {expected}"
            )
        problems += _coverage_problems(result, task)
    if problems:
        raise KitError("the leaderboard would drop or misfile these results:\n  " + "\n  ".join(problems))
    benchmark = mteb.Benchmark(name=f"lens-embed submission: {meta.name}", tasks=tasks)
    with registered(meta):
        table = (
            ResultCache(kit)
            .load_results(models=[meta], tasks=benchmark, include_remote=False)
            .get_benchmark_result()
        )
    if table.empty:
        raise KitError(f"mteb's benchmark table has no row for {meta.name} at revision {meta.revision}")
    return _markdown(table.drop(columns=[c for c in table.columns if str(c).startswith("_")]))


def _markdown(table: Any) -> str:
    """A pandas frame as a markdown table (pandas' own ``to_markdown`` needs the optional tabulate)."""
    header = "| " + " | ".join(str(c) for c in table.columns) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _cell(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


@contextmanager
def registered(meta: ModelMeta) -> Iterator[None]:
    """mteb's registry with this entry added, as after the registry pull request is merged.

    The leaderboard's table inner-joins results with the registry, so a model without an entry has no
    row; the table's metadata caches are cleared on the way in and out.
    """
    caches = (_create_table._static_model_meta, _create_table._meta_df_no_zs, _create_table._meta_df_with_zs)
    previous = MODEL_REGISTRY.get(str(meta.name))
    MODEL_REGISTRY[str(meta.name)] = meta
    for cache in caches:
        cache.cache_clear()
    try:
        yield
    finally:
        if previous is None:
            del MODEL_REGISTRY[str(meta.name)]
        else:
            MODEL_REGISTRY[str(meta.name)] = previous
        for cache in caches:
            cache.cache_clear()


def _coverage_problems(result: Any, task: Any) -> list[str]:
    """Missing evaluation splits or subsets of a result (mteb fills them with NaN, which sinks the mean)."""
    missing = [split for split in task.eval_splits if split not in result.scores]
    problems = [f"{result.task_name}: split {split!r} missing" for split in missing]
    filtered = result.validate_and_filter_scores(task=task)  # mteb marks each absent subset with a NaN score
    for split, scores in filtered.scores.items():
        absent = sorted(str(s["hf_subset"]) for s in scores if s.get("main_score") != s.get("main_score"))
        if absent and split not in missing:
            problems.append(f"{result.task_name}: split {split!r} lacks subset(s) {', '.join(absent)}")
    return problems


def search_dir(output: str | Path) -> Path:
    """Where ``lens-embed evaluate airbench`` writes its search results under its output folder."""
    return Path(output) / "airbench" / "search_results"


def write_airbench_zip(search_results: str | Path, retriever: str, output: str | Path) -> Path:
    """Zip ``<search_results>/<retriever>/NoReranker`` with paths relative to it, as AIR-Bench's
    ``scripts/zip_results.py`` does: ``<task_type>/<domain>/<language>_<dataset>_<split>.json`` at the
    root."""
    source = Path(search_results) / retriever / NO_RERANKER
    if not source.is_dir():
        raise FileNotFoundError(
            f"no AIR-Bench search results for {retriever!r} under {search_results} (expected {source})"
        )
    target = Path(output) / f"{retriever}_{NO_RERANKER}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in source.rglob("*") if p.is_file()):
            archive.write(file, file.relative_to(source).as_posix())
    return target


def check_airbench_zip(path: str | Path, benchmark_version: str = AIRBENCH_VERSION) -> AirZipSummary:
    """Read an AIR-Bench upload the way its leaderboard backend does (unzip, then
    ``Evaluator.evaluate_results``' walk of ``<task_type>/<domain>/*.json`` and its consistency checks),
    without the private test qrels."""
    Evaluator = require("air_benchmark.evaluation_utils.evaluator", "airbench").Evaluator  # noqa: N806
    air_tasks = require("air_benchmark.tasks.tasks", "airbench")
    check_benchmark_version, check_task_types = air_tasks.check_benchmark_version, air_tasks.check_task_types

    check_benchmark_version(benchmark_version)
    problems: list[str] = []
    files = test_files = 0
    datasets: set[str] = set()
    with tempfile.TemporaryDirectory() as scratch, zipfile.ZipFile(path) as archive:
        archive.extractall(scratch)
        root = Path(scratch)
        task_types = sorted(p.name for p in root.iterdir() if p.is_dir())
        try:
            check_task_types(task_types, benchmark_version)
        except ValueError as error:
            problems.append(f"top-level folders {task_types} are not AIR-Bench task types ({error})")
        for file in sorted(root.glob("*/*/*.json")):
            task_type, domain = file.parent.parent.name, file.parent.name
            info, results = Evaluator.load_search_results(str(file))
            where = file.relative_to(root).as_posix()
            expected_name = f"{info.get('language')}_{info.get('dataset_name')}_{info.get('split')}.json"
            checks = {
                "benchmark_version": (info.get("benchmark_version"), benchmark_version),
                "task_type": (info.get("task_type"), task_type),
                "domain": (info.get("domain"), domain),
                "file name": (file.name, expected_name),
            }
            problems += [
                f"{where}: {key} {got!r}, expected {want!r}"
                for key, (got, want) in checks.items()
                if got != want
            ]
            if not isinstance(results, dict) or not all(isinstance(v, dict) for v in results.values()):
                problems.append(f"{where}: search_results is not {{query id: {{doc id: score}}}}")
            files += 1
            test_files += info.get("split") == "test"
            datasets.add(f"{task_type}/{domain}/{info.get('language')}/{info.get('dataset_name')}")
    if files == 0:
        problems.append("no <task_type>/<domain>/<language>_<dataset>_<split>.json files at the zip's root")
    elif test_files == 0:
        problems.append("no test-split files: the leaderboard scores the test split only")
    if problems:
        raise KitError(
            f"{path}: AIR-Bench's leaderboard would not read this zip:\n  " + "\n  ".join(problems)
        )
    return AirZipSummary(Path(path), files, test_files, tuple(sorted(datasets)))


def kit_readme(meta: ModelMeta, table: str, airbench: AirZipSummary | None) -> str:
    """The submission steps, filled in for this model."""
    folder = f"results/{meta.model_name_as_path()}/{meta.revision}"
    n_datasets = len(airbench.datasets) if airbench else 0
    air = (
        f"""
## 3. AIR-Bench

Upload `{airbench.path.name}` ({airbench.test_files} test-split files, {n_datasets} dataset(s)) on the
AIR-Bench leaderboard's submission page (https://huggingface.co/spaces/AIR-Bench/leaderboard), with the
model name `{meta.name}` and its link `{meta.reference}`. The zip has AIR-Bench's layout
(`<task_type>/<domain>/<language>_<dataset>_<split>.json` at its root); the leaderboard scores the test
files against its private qrels.
"""
        if airbench
        else "\n## 3. AIR-Bench\n\nNot in this kit: rerun `submit-kit` with `--airbench OUTPUT` "
        "after `lens-embed evaluate airbench`.\n"
    )
    return f"""# Leaderboard submission kit: {meta.name}

Revision `{meta.revision}`, {meta.embed_dim} dimensions, licence {meta.license}. Every file here was
checked offline with mteb's and AIR-Bench's own readers by `lens-embed evaluate submit-kit`.

## 1. MTEB results (pull request to embeddings-benchmark/results)

1. Fork https://github.com/embeddings-benchmark/results and copy `{folder}/` of this kit to the
   same path in the fork (`model_meta.json` included).
2. Open a pull request; its CI loads the files with mteb's results loader, as this kit did.

The scores, as mteb's own benchmark table shows them:

{table}

## 2. mteb model registry (pull request to embeddings-benchmark/mteb)

1. Push the model to the hub under `{meta.name}` at revision `{meta.revision}` (the results above were
   computed at that revision) with its modules' code in the repository, so plain sentence-transformers
   loads it with `trust_remote_code=True`.
2. `{META_FILE}` is data and mteb's own loader: `InstructSentenceTransformerModel`, with the arguments
   the results were computed with, embeds each submitted task with its instruction (`{INSTRUCTIONS_NAME}`,
   in the LENS query format), documents of retrieval tasks as plain text, and other tasks with mteb's
   task prompts.
3. Copy `{META_FILE}` to `mteb/models/model_implementations/` in a fork of
   https://github.com/embeddings-benchmark/mteb, check it with
   `python -c "import mteb; mteb.get_model_meta('{meta.name}').load_model()"`, and open a pull request.
{air}"""


def build_kit(
    results: str | Path,
    model: str | Path,
    output: str | Path,
    *,
    name: str | None = None,
    revision: str | None = None,
    airbench: str | Path | None = None,
    airbench_version: str = AIRBENCH_VERSION,
    overwrite: bool = False,
    **meta_fields: Any,
) -> Path:
    """Write and check the whole kit; nothing is left in ``output`` unless every check passes.

    Args:
        results: the mteb results folder the model was evaluated into.
        model: the model folder (measured for the registry entry and loaded by its loader's check).
        output: the kit folder to create.
        name: the model's hub name (default: the name in the results' ``model_meta.json``).
        revision: the hub revision the results were computed at (default: the results folder's).
        airbench: an evaluation output folder holding ``airbench/search_results/``
            (``lens-embed evaluate airbench``).
        airbench_version: the AIR-Bench version the search results are for.
        overwrite: replace an existing kit folder.
        **meta_fields: ``release_date``, ``license``, ``training_datasets``, ``public_training_code``,
            ``public_training_data``, ``reference`` (see ``complete_model_meta``).
    """
    target = Path(output)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{target} exists and is not empty; pass --overwrite to replace it")
    source = model_results_dir(results, name, revision)
    meta = complete_model_meta(
        model,
        _read_json(source / "model_meta.json"),
        name=name,
        revision=revision or source.name,
        **meta_fields,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        shutil.copytree(
            source, staging / "results" / meta.model_name_as_path() / str(meta.revision), ignore=_not_results
        )
        entry = registry_meta(meta, submitted_instructions(source))
        (staging / META_FILE).write_text(registry_module(entry), encoding="utf-8")
        table = check_results(staging, entry)
        (staging / TABLE_FILE).write_text(table + "\n", encoding="utf-8")
        summary = None
        if airbench is not None:
            retriever = str(meta.name).replace("/", "__")
            zipped = write_airbench_zip(
                search_dir(airbench), _airbench_retriever(search_dir(airbench), retriever), staging
            )
            summary = check_airbench_zip(zipped, airbench_version)
        (staging / "README.md").write_text(kit_readme(meta, table, summary), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def _not_results(folder: str, names: list[str]) -> list[str]:
    """lens-embed's protocol record sits beside the results; the results repository takes task files only."""
    return [name for name in names if name == PROTOCOL_FILE]


def _airbench_retriever(search_results: Path, preferred: str) -> str:
    """The retriever folder of an AIR-Bench run: the model's name if present, else the only one there."""
    if (search_results / preferred).is_dir():
        return preferred
    found = sorted(p.name for p in search_results.iterdir() if p.is_dir()) if search_results.is_dir() else []
    if len(found) != 1:
        raise KitError(f"{search_results}: expected search results of {preferred!r}, found {found or 'none'}")
    return found[0]
