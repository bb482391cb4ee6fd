"""The ``lens-embed`` command: thin verbs over the Python API.

Building the parser imports nothing heavy (``lens-embed --help`` is instant); each verb imports
what it needs when it runs. Every verb's user errors are reported by :func:`main` in one format,
``lens-embed VERB: error: MESSAGE``, with exit code 2 and no traceback.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from lens_embed.cli_args import (
    add_load_options,
    backend_options,
    cluster_count,
    declare_output,
    non_negative_float,
    non_negative_int,
    positive_int,
    top_k_or_none,
)
from lens_embed.corpus import add_corpus_commands
from lens_embed.defaults import (
    BACKENDS,
    CLUSTER_NAME_TOKENS,
    DEFAULT_CLUSTERS,
    DEFAULT_MAX_SEQ_LENGTH,
    EXPORT_QUANTIZATIONS,
)
from lens_embed.inputs import read_texts
from lens_embed.serving import add_serving_commands
from lens_embed.storage import atomic_write, refuse_overlap
from lens_embed.vocabulary import DENSE_POOLING_MODES

if TYPE_CHECKING:
    import numpy as np

EXPORT_BACKENDS = BACKENDS[1:]


def _add_build(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("build", help="turn a decoder LLM (or encoder) into a LENS model")
    parser.add_argument(
        "base", help="hub id or local directory of the base model ('minilm' = the offline MiniLM)"
    )
    parser.add_argument("output", help="directory to save the LENS model to")
    parser.add_argument(
        "--clusters", type=cluster_count, default=DEFAULT_CLUSTERS, help="K, the number of clusters"
    )
    parser.add_argument(
        "--dense", choices=DENSE_POOLING_MODES, default=None, help="add a dense vector (hybrid)"
    )
    parser.add_argument("--dense-weight", type=non_negative_float, default=1.0)
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--kmeans-iterations", type=positive_int, default=20)
    parser.add_argument("--max-seq-length", type=positive_int, default=DEFAULT_MAX_SEQ_LENGTH)
    _add_position_top_k(parser)
    add_load_options(parser, dtype_help="the checkpoint's; bfloat16 for a 7B backbone", backends=False)
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    declare_output(parser, "output", "OUTPUT", folder=True)
    parser.set_defaults(func=_run_build)


POSITION_TOP_K_HELP = (
    "sparse LENS: each pooled position keeps only its K largest cluster logits before the max over "
    "positions (queries and documents alike; saved in the model)"
)


def _add_position_top_k(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--position-top-k", type=positive_int, default=None, help=POSITION_TOP_K_HELP + " (default: off)"
    )


def _run_build(args: argparse.Namespace) -> None:
    from lens_embed.build import build_lens_model
    from lens_embed.defaults import minilm_path

    base = minilm_path() if args.base == "minilm" else args.base
    model = build_lens_model(
        base,
        n_clusters=args.clusters,
        output_dir=args.output,
        dense_pooling=args.dense,
        dense_weight=args.dense_weight,
        seed=args.seed,
        kmeans_iterations=args.kmeans_iterations,
        max_seq_length=args.max_seq_length,
        attn_implementation=args.attn_implementation,
        dtype=args.dtype,
        overwrite=args.overwrite,
        position_top_k=args.position_top_k,
    )
    print(f"saved LENS model ({model.get_embedding_dimension()} dimensions) to {args.output}")


def _add_convert(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert a released LENS checkpoint (yibinlei/LENS-d8000 layout)"
    )
    parser.add_argument("source", help="hub id or local directory in the released layout")
    parser.add_argument("output")
    parser.add_argument("--max-seq-length", type=positive_int, default=DEFAULT_MAX_SEQ_LENGTH)
    _add_position_top_k(parser)
    parser.add_argument("--overwrite", action="store_true")
    declare_output(parser, "output", "OUTPUT", folder=True)
    parser.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> None:
    from lens_embed.convert import convert_checkpoint

    model = convert_checkpoint(
        args.source,
        args.output,
        max_seq_length=args.max_seq_length,
        overwrite=args.overwrite,
        position_top_k=args.position_top_k,
    )
    print(f"converted to {args.output} ({model.get_embedding_dimension()} dimensions)")


def _add_set_pooling(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "set-pooling",
        help="change the pooling of a saved LENS model folder (sparse LENS: --position-top-k)",
        description="Rewrites the folder's pooling config in place (atomically): its embeddings, content "
        "revision and cache keys change with it.",
    )
    parser.add_argument("model", help="LENS model folder (or its SparseEncoder folder)")
    parser.add_argument(
        "--position-top-k", type=top_k_or_none, required=True, help=POSITION_TOP_K_HELP + "; 'none': off"
    )
    parser.set_defaults(func=_run_set_pooling)


def _run_set_pooling(args: argparse.Namespace) -> None:
    from lens_embed.build import set_position_top_k

    config = set_position_top_k(args.model, args.position_top_k)
    state = "off" if args.position_top_k is None else f"k = {args.position_top_k}"
    print(f"{args.model}: per-position top-k {state} ({config})")


def save_array(array: np.ndarray, path: str | os.PathLike, overwrite: bool) -> None:
    """Write a ``.npy`` file atomically (:func:`lens_embed.storage.atomic_write`), with the usual file mode.

    Args:
        array: what to save.
        path: the target file.
        overwrite: replace an existing file; otherwise it is kept and this raises FileExistsError.
    """
    import numpy as np

    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    atomic_write(target, lambda stream: np.save(stream, array))


def _load_options(args: argparse.Namespace) -> dict[str, object]:
    """The loader's keywords for the ``--dtype`` / ``--attn-implementation`` (and ``--backend`` /
    ``--quantize``) of a verb (:func:`add_load_options`)."""
    return {"dtype": args.dtype, "attn_implementation": args.attn_implementation, **backend_options(args)}


def _add_query_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--query", action="store_true", help="embed as instructed queries (default: documents)"
    )
    parser.add_argument(
        "--instruction", default=None, help="query instruction (default: the model's 'query' prompt)"
    )


def _add_encode(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "encode", help="embed the texts of a file (one per line) into a .npy array"
    )
    parser.add_argument("model")
    parser.add_argument("texts", help="text file, one text per line, or .jsonl")
    parser.add_argument("--out", required=True, help="output .npy file")
    _add_query_options(parser)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument(
        "--max-active-dims",
        type=positive_int,
        default=None,
        help="keep only each vector's N largest lexicon weights (as index and search prune)",
    )
    add_load_options(parser)
    parser.add_argument("--overwrite", action="store_true")
    declare_output(parser, "out", "--out", folder=False)
    parser.set_defaults(func=_run_encode)


def _run_encode(args: argparse.Namespace) -> None:
    from lens_embed.loading import load_lens_model
    from lens_embed.model import encode

    refuse_overlap(args.out, "--out", args.model, "the model")  # --overwrite could replace a model file
    if Path(args.out).exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists; pass --overwrite to replace it")
    texts = read_texts(args.texts)
    model = load_lens_model(args.model, **_load_options(args))
    embeddings = encode(
        model,
        texts,
        query=args.query,
        instruction=args.instruction,
        batch_size=args.batch_size,
        show_progress_bar=True,
        max_active_dims=args.max_active_dims,
    )
    save_array(embeddings, args.out, args.overwrite)
    print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {args.out}")


def _add_explain(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain", help="show the top clusters of a text (and why a document matches)"
    )
    parser.add_argument("model")
    parser.add_argument("text")
    parser.add_argument("--document", default=None, help="a document to explain the match with")
    _add_query_options(parser)
    parser.add_argument("--top", type=positive_int, default=10, help="how many clusters to show (at most K)")
    add_load_options(parser)
    parser.set_defaults(func=_run_explain)


def _run_explain(args: argparse.Namespace) -> None:
    from lens_embed.loading import load_lens_model
    from lens_embed.model import encode

    model = load_lens_model(args.model, **_load_options(args))
    model.check_top(args.top)
    embedding = encode(model, [args.text], query=args.query, instruction=args.instruction)[0]
    print(f"top clusters of {args.text!r}:")
    for dim in model.top_dimensions(embedding, k=args.top):
        print(f"  {dim.index:5d}  {dim.weight:.3f}  {' '.join(dim.tokens)}")
    if args.document is not None:
        document = encode(model, [args.document])[0]
        print(f"cosine similarity with the document: {float(embedding @ document):.4f}; shared clusters:")
        for dim in model.match_dimensions(embedding, document, k=args.top):
            print(f"  {dim.index:5d}  {dim.weight:.4f}  {' '.join(dim.tokens)}")


def _add_default(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "default",
        help="print the embedded default's path: the trained LENS-MiniLM, assembled once from the package's "
        "parameter file",
    )
    parser.add_argument(
        "--untrained",
        action="store_true",
        help="the untrained construction instead (KMeans head on MiniLM, no training), built once",
    )
    parser.add_argument(
        "--clusters", type=cluster_count, default=None, help=f"K of --untrained (default {DEFAULT_CLUSTERS})"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="hash every file of the cached trained default (every use checks sizes and the head); a damaged "
        "entry is assembled again",
    )
    _add_export_options(parser, required=False)
    parser.set_defaults(func=_run_default)


def _run_default(args: argparse.Namespace) -> None:
    if args.clusters is not None and not args.untrained:
        raise ValueError(
            f"the trained default has K = {DEFAULT_CLUSTERS}; --clusters needs --untrained "
            "(or lens-embed build minilm OUT --clusters K)"
        )
    if args.verify and args.untrained:
        raise ValueError("--verify checks the trained default's cache entry; not --untrained")
    calibration = _export_request(args)
    from lens_embed.embedded import default_model_path, untrained_default_path

    path = (
        untrained_default_path(args.clusters or DEFAULT_CLUSTERS)
        if args.untrained
        else default_model_path(verify=args.verify)
    )
    if args.backend is not None:
        from lens_embed.export import export_model

        export_model(path, args.backend, args.quantize, calibration)  # once: a valid export is kept
    print(path)


def _add_export_options(parser: argparse.ArgumentParser, required: bool) -> None:
    """``--backend``, ``--quantize`` and ``--calibration`` of ``export`` (and ``default``, which exports
    into its cache entry when given ``--backend``)."""
    parser.add_argument(
        "--backend",
        choices=EXPORT_BACKENDS,
        default="onnx" if required else None,
        help="ONNX Runtime or OpenVINO" + (" (default: onnx)" if required else ": export the model for it"),
    )
    parser.add_argument(
        "--quantize", choices=EXPORT_QUANTIZATIONS, default=None, help="int8 (default: float32)"
    )
    parser.add_argument(
        "--calibration",
        default=None,
        help="texts (one per line, or .jsonl) that OpenVINO's static int8 calibrates on; "
        "--backend openvino --quantize int8 only",
    )


def _export_request(args: argparse.Namespace) -> list[str] | None:
    """Check ``--backend`` / ``--quantize`` / ``--calibration`` before any model work; the calibration
    texts."""
    if args.backend is None:
        if args.quantize is not None or args.calibration is not None:
            raise ValueError("--quantize and --calibration need --backend onnx or openvino")
        return None
    static = args.backend == "openvino" and args.quantize == "int8"
    if static != (args.calibration is not None):
        raise ValueError(
            "--backend openvino --quantize int8 needs --calibration FILE (typical texts to calibrate on)"
            if static
            else "--calibration applies to --backend openvino --quantize int8 only"
        )
    return read_texts(args.calibration) if static else None


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a model's backbone for the CPU backends (ONNX Runtime, OpenVINO), float32 or int8",
        description="Writes onnx/model.onnx, onnx/model_qint8_avx512_vnni.onnx, openvino/openvino_model.xml "
        "or openvino/openvino_model_qint8_quantized.xml into the model folder (sentence-transformers' "
        "names), recorded with the hash of the weights it came from; every verb that loads a model then "
        "runs it with --backend (and --quantize). An export already there and current is kept.",
    )
    parser.add_argument("model", help="local model folder")
    _add_export_options(parser, required=True)
    parser.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> None:
    calibration = _export_request(args)
    from lens_embed.export import export_model

    path = export_model(args.model, args.backend, args.quantize, calibration)
    print(f"exported {path}")


def _add_card(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("card", help="(re)write the model card (README.md) of a saved LENS model")
    parser.add_argument("model", help="LENS model folder")
    parser.add_argument(
        "--results", default=None, help="mteb results folder for the evaluation table and model-index"
    )
    parser.add_argument(
        "--results-name", default=None, help="the model's name in RESULTS (default: matched by revision)"
    )
    parser.add_argument("--model-id", default=None, help="hub id the card's usage examples load")
    parser.add_argument(
        "--base-model", default=None, help="hub id of the base model (its licence is read from its card)"
    )
    parser.add_argument("--license", default=None, help="licence id (default: the base model's)")
    add_load_options(parser, backends=False)
    parser.set_defaults(func=_run_card)


def _run_card(args: argparse.Namespace) -> None:
    """The card of a saved model: its facts (the loaded model), its rows (evaluation reads the results
    folder, by default the model's results under this folder's content revision), its provenance."""
    from lens_embed.card import write_card
    from lens_embed.loading import load_lens_model

    facts = load_lens_model(args.model, **_load_options(args)).facts()
    rows = None
    if args.results is not None:
        from lens_embed.evaluation.results import load_eval_rows, model_revision

        revision = None if args.results_name else model_revision(args.model)
        rows = load_eval_rows(args.results, args.results_name, revision)
    target = write_card(
        args.model, facts, rows=rows, model_id=args.model_id, base_model=args.base_model, license=args.license
    )
    print(f"wrote {target}")


def _add_sparse_encoder(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sparse-encoder",
        help="write a LENS model's SparseEncoder folder (sentence-transformers' sparse stack)",
        description="SparseEncoder(OUT, trust_remote_code=True) then gives the model's embeddings as sparse "
        "tensors, decode() naming each dimension by its cluster's tokens. OUT shares MODEL's files "
        "(hard links); on the hub, push it to the 'sparse' branch of MODEL's repository.",
    )
    parser.add_argument("model", help="LENS model folder (or a released name)")
    parser.add_argument("output", help="folder to write")
    parser.add_argument(
        "--max-active-dims",
        type=positive_int,
        default=None,
        help="the folder's default: each vector keeps its N largest weights (default: all active ones)",
    )
    parser.add_argument(
        "--cluster-tokens",
        type=positive_int,
        default=CLUSTER_NAME_TOKENS,
        help="member tokens in each cluster's name",
    )
    add_load_options(parser, backends=False)
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    declare_output(parser, "output", "OUTPUT", folder=True)
    parser.set_defaults(func=_run_sparse_encoder)


def _run_sparse_encoder(args: argparse.Namespace) -> None:
    from lens_embed.sparse import write_sparse_encoder

    path = write_sparse_encoder(
        args.model,
        args.output,
        max_active_dims=args.max_active_dims,
        tokens=args.cluster_tokens,
        overwrite=args.overwrite,
        **_load_options(args),
    )
    print(f"wrote the SparseEncoder folder of {args.model} to {path}")


def build_parser() -> argparse.ArgumentParser:
    """The whole ``lens-embed`` parser, every verb included; imports nothing heavy."""
    parser = argparse.ArgumentParser(prog="lens-embed", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_build,
        _add_convert,
        _add_set_pooling,
        _add_encode,
        _add_explain,
        _add_default,
        _add_export,
        _add_card,
        _add_sparse_encoder,
    ):
        add(subparsers)
    add_corpus_commands(subparsers)
    add_serving_commands(subparsers)
    return parser
