"""The leaderboard submission kit: ``lens-embed evaluate submit-kit RESULTS --model MODEL --output KIT``.

What the MTEB and AIR-Bench leaderboards need, written and checked offline:

- ``KIT/results/<org__model>/<revision>/``: the model's result files in the layout of the
  embeddings-benchmark/results repository, checked by loading them back with mteb's own results
  loader and building mteb's own benchmark table; anything the leaderboard would drop (a missing
  split or subset, a task mteb does not know, a dataset or model revision that does not match) stops
  the kit with the reason.
- ``KIT/mteb_model_meta.py``: the ``ModelMeta`` entry for mteb's model registry as Python source
  (mteb's own ``ModelMeta.to_python``), with an encoder class that loads the model with plain
  sentence-transformers (``trust_remote_code=True``) and applies the LENS instruction protocol.
- ``KIT/<retriever>_NoReranker.zip`` (with ``--airbench``): the AIR-Bench search results, laid out as
  AIR-Bench's own ``zip_results.py`` does and checked the way its leaderboard reads them.
- ``KIT/README.md``: the submission steps.

Nothing heavy is imported at module level: ``add_submit_command`` runs for every ``lens-embed`` call.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mteb.models import ModelMeta

META_FILE = "mteb_model_meta.py"
TABLE_FILE = "benchmark_table.md"
NO_RERANKER = "NoReranker"
# Fields a registry entry must state; mteb's CI and leaderboard filters read every one of them.
REQUIRED_META_FIELDS = (
    "name", "revision", "release_date", "n_parameters", "memory_usage_mb", "embed_dim", "max_tokens",
    "license", "open_weights", "similarity_fn_name", "framework", "use_instructions", "training_datasets",
)

# The encoder of the registry entry. It lives in mteb's repository, where lens-embed is not installed,
# so it is plain sentence-transformers + mteb; tests/evaluation/test_submit_kit.py pins its embeddings
# to lens_embed.evaluation.mteb_model.LensEncoder's on a symmetric and an asymmetric task.
REGISTRY_ENCODER_SOURCE = '''
class LensInstructEncoder(AbsEncoder):
    """A LENS model (sentence-transformers, its modules' code in the repository) with the authors' protocol.

    Retrieval and reranking queries are instructed queries and their documents plain text; every text
    of every other task type is an instructed query. The instruction is the one the submitted results
    were computed with (TASK_INSTRUCTIONS), else mteb's prompt from the task's metadata.
    """

    def __init__(self, model_name: str, revision: str | None = None, device: str | None = None, **kwargs: Any) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(model_name, revision=revision, device=device, trust_remote_code=True, **kwargs)

    def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs):
        texts = [text for batch in inputs for text in batch["text"]]
        options = {"batch_size": int(kwargs.get("batch_size") or 32), "convert_to_numpy": True}
        document_side = prompt_type == PromptType.document
        entry = TASK_INSTRUCTIONS.get(task_metadata.name)
        if entry is not None:  # the instruction the submitted scores were computed with
            instruction = entry["document"] if document_side else entry["query"]
        elif task_metadata.type in ASYMMETRIC_TASK_TYPES and document_side:
            instruction = None
        else:
            instruction = self.get_instruction(task_metadata, PromptType.query)
        if instruction is None:
            embeddings = self.model.encode_document(texts, **options)
        else:
            prompt = QUERY_PROMPT_TEMPLATE.replace("{instruction}", instruction)
            embeddings = self.model.encode_query(texts, prompt=prompt, **options)
        return np.asarray(embeddings, dtype=np.float32)
'''


def not_an_mteb_task(name: str) -> str:
    """The one wording of a result the leaderboard cannot file (e.g. a local offline-suite task)."""
    return f"{name}: not an mteb task (a local offline-suite folder?), so the leaderboard has no column for it"


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
    """The registry ``ModelMeta``: measured on the model, named and dated as the results were, completed
    by what only the submitter knows; the loader is the registry encoder."""
    from lens_embed.card import existing_provenance
    from lens_embed.citation import LENS_CITATION
    from lens_embed.evaluation.mteb_model import build_model_meta
    from lens_embed.model import load_lens_model

    model = load_lens_model(model_path, device="cpu")
    name = name or results_meta.get("name")
    revision = revision or results_meta.get("revision")
    measured = build_model_meta(model, model_path, name=name, revision=revision)
    provenance = existing_provenance(model_path) if Path(model_path).is_dir() else None
    recorded_training = results_meta.get("training_datasets")
    datasets = set(training_datasets) if training_datasets is not None else (
        set(recorded_training) if recorded_training is not None else measured.training_datasets
    )
    if datasets is None and provenance is not None and not provenance.training_recipe:
        datasets = set()  # an untrained LENS construction: no training data of its own
    return measured.model_copy(
        update={
            "loader": None,
            "loader_kwargs": {},
            "release_date": release_date or results_meta.get("release_date") or datetime.date.today().isoformat(),
            "license": license or results_meta.get("license") or (provenance.license if provenance else None),
            "training_datasets": datasets,
            "public_training_code": public_training_code or measured.public_training_code,
            "public_training_data": public_training_data or measured.public_training_data,
            "reference": reference or measured.reference or (f"https://huggingface.co/{name}" if name else None),
            "citation": LENS_CITATION,
            "n_embedding_parameters": model[0].auto_model.get_input_embeddings().weight.numel(),
        }
    )


def submitted_instructions(results_dir: Path) -> dict[str, dict[str, str | None]]:
    """Each submitted task's instructions, resolved from the source its results recorded (authors' map,
    a file, or mteb's prompts: then empty, as the registry encoder looks those up itself)."""
    import mteb

    from lens_embed.evaluation.instructions import load_instructions
    from lens_embed.evaluation.runner import PROTOCOL_FILE

    protocol = results_dir / PROTOCOL_FILE
    spec = _read_json(protocol).get("instructions") if protocol.is_file() else "authors"
    if spec in (None, "mteb"):
        return {}
    instructions = load_instructions(spec)
    table = {}
    for file in sorted(results_dir.glob("*.json")):
        if file.name in ("model_meta.json", PROTOCOL_FILE):
            continue
        try:
            metadata = mteb.get_task(file.stem).metadata
        except KeyError:
            raise KitError(not_an_mteb_task(file.stem)) from None
        resolved = instructions.for_task(metadata)
        table[file.stem] = {"query": resolved.query, "document": resolved.document}
    return table


def model_meta_source(meta: ModelMeta, instructions: dict[str, dict[str, str | None]]) -> str:
    """A module for mteb's ``mteb/models/model_implementations/``: the encoder and the ``ModelMeta``;
    ``instructions`` (from :func:`submitted_instructions`) make its embeddings those that were scored."""
    from lens_embed.evaluation.instructions import ASYMMETRIC_TASK_TYPES
    from lens_embed.prompts import query_prompt

    missing = [field for field in REQUIRED_META_FIELDS if getattr(meta, field) is None]
    if missing:
        options = ", ".join(f"--{field.replace('_', '-')}" for field in missing)
        raise KitError(f"the ModelMeta of {meta.name} lacks {', '.join(missing)}: pass {options} to submit-kit")
    variable = "".join(c if c.isalnum() else "_" for c in str(meta.name).split("/")[-1].lower())
    # mteb's own serialisation; the loader is the encoder class defined above it in the module
    entry = meta.model_copy(update={"loader": None, "loader_kwargs": {}}).to_python()
    entry = entry.replace("    loader=None,\n", "    loader=LensInstructEncoder,\n", 1)
    return "\n".join(
        [
            f'"""mteb registry entry for {meta.name} (written by lens-embed submit-kit)."""',
            "",
            "from __future__ import annotations",
            "",
            "from typing import Any",
            "",
            "import numpy as np",
            "",
            "from mteb.models.abs_encoder import AbsEncoder",
            "from mteb.models.model_meta import ModelMeta, ScoringFunction",
            "from mteb.types import PromptType",
            "",
            f"ASYMMETRIC_TASK_TYPES = frozenset({sorted(ASYMMETRIC_TASK_TYPES)!r})",
            f"QUERY_PROMPT_TEMPLATE = {query_prompt('{instruction}')!r}",
            f"TASK_INSTRUCTIONS = {instructions!r}",
            REGISTRY_ENCODER_SOURCE,
            f"{variable} = {entry}",
            "",
        ]
    )


def load_meta_source(source: str) -> ModelMeta:
    """Execute a generated registry module and return its ``ModelMeta`` (checks that it is valid Python)."""
    from mteb.models import ModelMeta

    namespace: dict[str, Any] = {"__name__": "lens_registry_entry"}
    exec(compile(source, META_FILE, "exec"), namespace)  # noqa: S102 - source written by this module
    metas = [value for value in namespace.values() if isinstance(value, ModelMeta)]
    if len(metas) != 1:
        raise KitError(f"{META_FILE} defines {len(metas)} ModelMeta entries, expected 1")
    return metas[0]


def check_results(kit: str | Path, meta: ModelMeta) -> str:
    """Load the kit's results with mteb's own loader and build mteb's own benchmark table of them.

    Fails on what the leaderboard would drop or misfile: a task mteb does not know, a result whose
    dataset revision is not the task's, a missing split or subset, a model name or revision that does
    not match the registry entry. Returns the table as markdown.
    """
    import mteb
    from mteb.cache import ResultCache

    folder = Path(kit) / "results" / meta.model_name_as_path() / str(meta.revision)
    recorded = _read_json(folder / "model_meta.json") if (folder / "model_meta.json").is_file() else {}
    if recorded.get("name") != meta.name or recorded.get("revision") != meta.revision:
        raise KitError(
            f"{folder / 'model_meta.json'} names {recorded.get('name')!r} at revision {recorded.get('revision')!r}, "
            f"the registry entry {meta.name!r} at {meta.revision!r}"
        )
    loaded = ResultCache(kit).load_results(models=[meta], include_remote=False, require_model_meta=True)
    results = [result for model in loaded.model_results for result in model.task_results]
    if not results:
        raise KitError(f"mteb's results loader finds no results for {meta.name} at revision {meta.revision} in {folder}")
    problems: list[str] = []
    tasks = []
    for result in results:
        try:
            task = mteb.get_task(result.task_name)
        except KeyError:
            problems.append(not_an_mteb_task(result.task_name))
            continue
        tasks.append(task)
        expected = task.metadata.dataset.get("revision")
        if result.dataset_revision != expected:
            problems.append(f"{result.task_name}: dataset revision {result.dataset_revision}, mteb's task has {expected}")
        problems += _coverage_problems(result, task)
    if problems:
        raise KitError("the leaderboard would drop or misfile these results:\n  " + "\n  ".join(problems))
    benchmark = mteb.Benchmark(name=f"lens-embed submission: {meta.name}", tasks=tasks)
    with registered(meta):
        table = ResultCache(kit).load_results(models=[meta], tasks=benchmark, include_remote=False).get_benchmark_result()
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
    from mteb.benchmarks import _create_table
    from mteb.models.model_implementations import MODEL_REGISTRY

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


def write_airbench_zip(search_results: str | Path, retriever: str, output: str | Path) -> Path:
    """Zip ``<search_results>/<retriever>/NoReranker`` with paths relative to it, as AIR-Bench's
    ``scripts/zip_results.py`` does: ``<task_type>/<domain>/<language>_<dataset>_<split>.json`` at the root."""
    source = Path(search_results) / retriever / NO_RERANKER
    if not source.is_dir():
        raise KitError(f"no AIR-Bench search results for {retriever!r} under {search_results} (expected {source})")
    target = Path(output) / f"{retriever}_{NO_RERANKER}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in source.rglob("*") if p.is_file()):
            archive.write(file, file.relative_to(source).as_posix())
    return target


def check_airbench_zip(path: str | Path, benchmark_version: str = "AIR-Bench_24.05") -> AirZipSummary:
    """Read an AIR-Bench upload the way its leaderboard backend does (unzip, then ``Evaluator.evaluate_results``'
    walk of ``<task_type>/<domain>/*.json`` and its consistency checks), without the private test qrels."""
    from air_benchmark.evaluation_utils.evaluator import Evaluator
    from air_benchmark.tasks.tasks import check_benchmark_version, check_task_types

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
            problems += [f"{where}: {key} {got!r}, expected {want!r}" for key, (got, want) in checks.items() if got != want]
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
        raise KitError(f"{path}: AIR-Bench's leaderboard would not read this zip:\n  " + "\n  ".join(problems))
    return AirZipSummary(Path(path), files, test_files, tuple(sorted(datasets)))


def kit_readme(meta: ModelMeta, table: str, airbench: AirZipSummary | None) -> str:
    """The submission steps, filled in for this model."""
    folder = f"results/{meta.model_name_as_path()}/{meta.revision}"
    air = (
        f"""
## 3. AIR-Bench

Upload `{airbench.path.name}` ({airbench.test_files} test-split files, {len(airbench.datasets)} dataset(s)) on the
AIR-Bench leaderboard's submission page (https://huggingface.co/spaces/AIR-Bench/leaderboard), with the
model name `{meta.name}` and its link `{meta.reference}`. The zip has AIR-Bench's layout
(`<task_type>/<domain>/<language>_<dataset>_<split>.json` at its root); the leaderboard scores the test
files against its private qrels.
"""
        if airbench
        else "\n## 3. AIR-Bench\n\nNot in this kit: rerun `submit-kit` with `--airbench OUTPUT` after `lens-embed evaluate airbench`.\n"
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
2. Its encoder embeds each submitted task with the instructions its results were computed with
   (`TASK_INSTRUCTIONS` in `{META_FILE}`, in the LENS format), and other tasks with mteb's task prompts.
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
    airbench_version: str = "AIR-Bench_24.05",
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
        airbench: an evaluation output folder holding ``airbench/search_results/`` (``lens-embed evaluate airbench``).
        airbench_version: the AIR-Bench version the search results are for.
        overwrite: replace an existing kit folder.
        **meta_fields: ``release_date``, ``license``, ``training_datasets``, ``public_training_code``,
            ``public_training_data``, ``reference`` (see ``complete_model_meta``).
    """
    target = Path(output)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{target} exists and is not empty; pass --overwrite to replace it")
    source = model_results_dir(results, name, revision)
    meta = complete_model_meta(model, _read_json(source / "model_meta.json"), name=name, revision=revision or source.name, **meta_fields)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        shutil.copytree(
            source, staging / "results" / meta.model_name_as_path() / str(meta.revision), ignore=_not_results
        )
        source_code = model_meta_source(meta, submitted_instructions(source))
        (staging / META_FILE).write_text(source_code, encoding="utf-8")
        table = check_results(staging, load_meta_source(source_code))
        (staging / TABLE_FILE).write_text(table + "\n", encoding="utf-8")
        summary = None
        if airbench is not None:
            from lens_embed.evaluation.airbench import search_dir

            retriever = str(meta.name).replace("/", "__")
            zipped = write_airbench_zip(search_dir(airbench), _airbench_retriever(search_dir(airbench), retriever), staging)
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
    from lens_embed.evaluation.runner import PROTOCOL_FILE

    return [name for name in names if name == PROTOCOL_FILE]


def _airbench_retriever(search_results: Path, preferred: str) -> str:
    """The retriever folder of an AIR-Bench run: the model's name if present, else the only one there."""
    if (search_results / preferred).is_dir():
        return preferred
    found = sorted(p.name for p in search_results.iterdir() if p.is_dir()) if search_results.is_dir() else []
    if len(found) != 1:
        raise KitError(f"{search_results}: expected search results of {preferred!r}, found {found or 'none'}")
    return found[0]


def add_submit_command(commands: argparse._SubParsersAction) -> None:
    """Register ``evaluate submit-kit`` on the ``evaluate`` sub-commands."""
    parser = commands.add_parser("submit-kit", help="write and check an MTEB / AIR-Bench leaderboard submission")
    parser.add_argument("results", help="mteb results folder the model was evaluated into")
    parser.add_argument("--model", required=True, help="the model folder")
    parser.add_argument("--output", required=True, help="kit folder to write")
    parser.add_argument("--name", default=None, help="hub name org/model (default: from the results)")
    parser.add_argument("--revision", default=None, help="hub revision of the results (default: from the results)")
    parser.add_argument("--release-date", default=None, help="YYYY-MM-DD (default: today)")
    parser.add_argument("--license", default=None, help="licence id (default: the model card's)")
    parser.add_argument("--training-datasets", nargs="*", default=None, help="mteb names of the training datasets")
    parser.add_argument("--public-training-code", default=None, help="URL of the training code")
    parser.add_argument("--public-training-data", default=None, help="URL of the training data")
    parser.add_argument("--reference", default=None, help="model URL (default: its hub page)")
    parser.add_argument("--airbench", default=None, help="evaluation output folder of `evaluate airbench` to zip and check")
    parser.add_argument("--airbench-version", default="AIR-Bench_24.05")
    parser.add_argument("--overwrite", action="store_true")
    parser.set_defaults(func=cmd_submit_kit)


def cmd_submit_kit(args: argparse.Namespace) -> int:
    kit = build_kit(
        args.results,
        args.model,
        args.output,
        name=args.name,
        revision=args.revision,
        airbench=args.airbench,
        airbench_version=args.airbench_version,
        overwrite=args.overwrite,
        release_date=args.release_date,
        license=args.license,
        training_datasets=args.training_datasets,
        public_training_code=args.public_training_code,
        public_training_data=args.public_training_data,
        reference=args.reference,
    )
    print((kit / TABLE_FILE).read_text(encoding="utf-8"))
    print(f"submission kit written to {kit}: see {kit / 'README.md'}")
    return 0
