"""The corpus, index and search verbs at work: each takes its options instance
(:mod:`lens_embed.commands.serving_options`)."""

from __future__ import annotations

from pathlib import Path

from lens_embed.base.cli_args import api_key
from lens_embed.base.inputs import read_documents, read_texts
from lens_embed.base.options import keywords
from lens_embed.base.quantization import QuantizationSettings
from lens_embed.base.storage import cache_dir, check_output_file, check_writable_folder, refuse_overlap
from lens_embed.commands.serving_options import (
    CollectionOptions,
    EncodeCorpusOptions,
    IndexOptions,
    SearchOptions,
)
from lens_embed.models.loading import load_lens_model
from lens_embed.serving.collections import (
    CollectionSpec,
    check_quantized_search,
    check_trec_ids,
    index_corpus,
    recorded_spec,
    search_collection,
    write_run,
)
from lens_embed.serving.corpus import distributed_context, encode_corpus, load_for_rank, rank_zero
from lens_embed.serving.engine import Backend, EngineTarget


def run_encode_corpus(options: EncodeCorpusOptions) -> int:
    """Embed a corpus into resumable shards (on every rank under torchrun)."""
    refuse_overlap(
        options.out, "--out", options.model, "the model"
    )  # shards and a manifest in a model folder
    texts = read_texts(options.texts)
    rank, world, model = load_for_rank(options.model, **options.load_keywords())
    merged = encode_corpus(model, texts, options.out, **keywords(options, encode_corpus))
    if rank == 0:
        print(f"wrote {len(texts)} embeddings to {merged} ({world} process{'es' if world > 1 else ''})")
    return 0


def engine_target(options: CollectionOptions, **collection: int | None) -> EngineTarget:
    """Where a verb's collection lives: ``--url`` (a cluster), else ``--path`` or the cache's
    ``collections/``; ``collection``: the options of a new cluster collection (``shard_number``...)."""
    if options.url == ":memory:":  # qdrant-client's in-process store: what index wrote would die with it
        raise ValueError(
            "--url :memory: is a store that lives only as long as this process; give a server's URL, "
            "or --path for a collection on disk"
        )
    if options.url is not None:
        return EngineTarget(url=options.url, api_key=api_key(options), **collection)
    path = Path(options.path) if options.path else cache_dir() / "collections"
    return EngineTarget(path=path, api_key=options.api_key, **collection)


def checked_target(options: CollectionOptions, model: str, **collection: int | None) -> EngineTarget:
    """The collection's place, refused before any model loads when it cannot be used
    (:meth:`EngineTarget.check`) or lies inside the model folder that writing would change."""
    target = engine_target(options, **collection)
    if target.path is not None:
        refuse_overlap(target.path, "--path", model, "the model")
    target.check(options.collection)
    return target


def _open_checked(target: EngineTarget, collection: str) -> Backend:
    """The collection's backend, opened (in-process: locked) and its record read when it exists, so a
    collection in use, damaged or foreign is named before the model loads."""
    backend = target.open(collection)
    try:
        if backend.exists():
            CollectionSpec.from_record(backend.metadata(), backend.location)
    except BaseException:
        backend.close()
        raise
    return backend


def run_index(options: IndexOptions) -> int:
    """Embed a corpus and upload it to a collection (rank 0 uploads under torchrun)."""
    documents = read_documents(options.corpus)
    quantization = QuantizationSettings.read(vars(options))
    quantization.check_dense(options.vectors != "sparse")
    target = checked_target(
        options,
        options.model,
        shard_number=options.shard_number,
        replication_factor=options.replication_factor,
    )
    if options.shards is not None:
        refuse_overlap(options.shards, "--shards", options.model, "the model")  # would change its revision
        check_writable_folder(options.shards, "--shards")
    distributed_context()  # join the torchrun group first: rank 0 alone opens the collection
    backend = rank_zero(lambda: _open_checked(target, options.collection))
    try:
        _, _, model = load_for_rank(options.model, **options.load_keywords())
        summary = index_corpus(
            model,
            documents,
            backend,
            model_name=options.model,
            shard_dir=options.shards,
            **{**keywords(options, index_corpus), "quantization": quantization},
        )
    finally:
        if backend is not None:
            backend.close()
    if summary is not None:
        print(
            f"{summary.location}: {summary.documents} documents ({summary.uploaded} uploaded now, "
            f"{summary.documents - summary.uploaded} already there)"
        )
    return 0


def run_search(options: SearchOptions) -> int:
    """Search a collection with instructed queries and write the run file."""
    refuse_overlap(options.out, "--out", options.model, "the model")  # --overwrite could replace a model file
    check_output_file(options.out, "--out", overwrite=options.overwrite)
    queries = read_documents(options.queries, titles=False)
    if Path(options.out).suffix != ".json":
        check_trec_ids(queries)
    target = checked_target(options, options.model)
    load_keywords = options.load_keywords()  # refuses --quantize without a backend before the engine opens
    with target.open(options.collection) as backend:
        spec = recorded_spec(backend)
        check_quantized_search(spec, options.using, **keywords(options, check_quantized_search))
        model = load_lens_model(options.model, **load_keywords)
        results = search_collection(model, queries, backend, **keywords(options, search_collection))
    path = write_run(results, options.out)
    print(
        f"wrote {sum(map(len, results.values()))} results of {len(results)} queries ({spec.vectors}, "
        f"using {options.using}) to {path}"
    )
    return 0
