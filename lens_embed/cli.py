"""The ``lens-embed`` command: thin verbs over the Python API."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def _add_build(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("build", help="turn a decoder LLM (or encoder) into a LENS model")
    parser.add_argument("base", help="hub id or local directory of the base model ('minilm' = the offline MiniLM)")
    parser.add_argument("output", help="directory to save the LENS model to")
    parser.add_argument("--clusters", type=int, default=4000, help="K, the number of vocabulary clusters")
    parser.add_argument("--dense", choices=["mean", "last"], default=None, help="add a dense vector (hybrid)")
    parser.add_argument("--dense-weight", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kmeans-iterations", type=int, default=20)
    parser.add_argument("--max-seq-length", type=int, default=512)
    parser.add_argument("--attn-implementation", choices=["eager", "sdpa", "flash_attention_2"], default=None)
    parser.add_argument("--dtype", default=None, help="e.g. bfloat16 for a 7B backbone")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    parser.set_defaults(func=_run_build)


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
        torch_dtype=args.dtype,
        overwrite=args.overwrite,
    )
    print(f"saved LENS model ({model.get_embedding_dimension()} dimensions) to {args.output}")


def _add_convert(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("convert", help="convert a released LENS checkpoint (yibinlei/LENS-d8000 layout)")
    parser.add_argument("source", help="hub id or local directory in the released layout")
    parser.add_argument("output")
    parser.add_argument("--max-seq-length", type=int, default=512)
    parser.add_argument("--overwrite", action="store_true")
    parser.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> None:
    from lens_embed.convert import convert_checkpoint

    model = convert_checkpoint(args.source, args.output, max_seq_length=args.max_seq_length, overwrite=args.overwrite)
    print(f"converted to {args.output} ({model.get_embedding_dimension()} dimensions)")


def read_texts(path: str) -> list[str]:
    """One text per line (a .jsonl file: one JSON string, or an object with a ``text`` field, per line)."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"input file not found: {source}")
    lines = source.read_text(encoding="utf-8").splitlines()
    if source.suffix != ".jsonl":
        return lines
    texts = []
    for number, line in enumerate(lines, start=1):
        item = json.loads(line)
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise ValueError(f"{source}:{number}: expected a JSON string or an object with a string 'text'")
        texts.append(text)
    return texts


def save_array(array: np.ndarray, path: str, overwrite: bool) -> None:
    """Write .npy atomically; an existing file is kept unless overwrite is asked for."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".npy")
    with os.fdopen(handle, "wb") as stream:
        np.save(stream, array)
    os.replace(temporary, target)


def _add_query_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--query", action="store_true", help="embed as instructed queries (default: documents)")
    parser.add_argument("--instruction", default=None, help="query instruction (default: the model's 'query' prompt)")


def _add_encode(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("encode", help="embed the texts of a file (one per line) into a .npy array")
    parser.add_argument("model")
    parser.add_argument("texts", help="text file, one text per line, or .jsonl")
    parser.add_argument("--out", required=True, help="output .npy file")
    _add_query_options(parser)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--overwrite", action="store_true")
    parser.set_defaults(func=_run_encode)


def _run_encode(args: argparse.Namespace) -> None:
    from lens_embed.model import encode, load_lens_model

    if Path(args.out).exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists; pass --overwrite to replace it")
    texts = read_texts(args.texts)
    model = load_lens_model(args.model)
    embeddings = encode(
        model, texts, query=args.query, instruction=args.instruction, batch_size=args.batch_size, show_progress_bar=True
    )
    save_array(embeddings, args.out, args.overwrite)
    print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {args.out}")


def _add_info(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="describe a LENS model")
    parser.add_argument("model")
    parser.set_defaults(func=_run_info)


def _run_info(args: argparse.Namespace) -> None:
    from lens_embed.backbone import is_decoder_config
    from lens_embed.model import is_lens_model, lexicon_pooling, load_lens_model

    model = load_lens_model(args.model)
    config = model[0].auto_model.config
    info = {
        "lens": is_lens_model(model),
        "backbone": config.model_type,
        "bidirectional": not is_decoder_config(config) or getattr(config, "is_causal", True) is False,
        "embedding_dimension": model.get_embedding_dimension(),
        "max_seq_length": model.max_seq_length,
        "prompts": sorted(model.prompts),
    }
    if info["lens"]:
        pooling = lexicon_pooling(model)
        info.update(clusters=pooling.n_clusters, dense=pooling.dense_pooling, dense_weight=pooling.dense_weight)
    print(json.dumps(info, indent=2))


def _add_explain(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("explain", help="show the top clusters of a text (and why a document matches)")
    parser.add_argument("model")
    parser.add_argument("text")
    parser.add_argument("--document", default=None, help="a document to explain the match with")
    _add_query_options(parser)
    parser.add_argument("--top", type=int, default=10)
    parser.set_defaults(func=_run_explain)


def _run_explain(args: argparse.Namespace) -> None:
    from lens_embed.explain import match_dimensions, top_dimensions
    from lens_embed.model import encode, load_lens_model

    model = load_lens_model(args.model)
    embedding = encode(model, [args.text], query=args.query, instruction=args.instruction)[0]
    print(f"top clusters of {args.text!r}:")
    for dim in top_dimensions(model, embedding, k=args.top):
        print(f"  {dim.index:5d}  {dim.weight:.3f}  {' '.join(dim.tokens)}")
    if args.document is not None:
        document = encode(model, [args.document])[0]
        print(f"cosine similarity with the document: {float(embedding @ document):.4f}; shared clusters:")
        for dim in match_dimensions(model, embedding, document, k=args.top):
            print(f"  {dim.index:5d}  {dim.weight:.4f}  {' '.join(dim.tokens)}")


def _add_default(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("default", help="print the embedded default LENS-MiniLM's path, building it once")
    parser.add_argument("--clusters", type=int, default=None, help="K (default: 4000)")
    parser.set_defaults(func=_run_default)


def _run_default(args: argparse.Namespace) -> None:
    from lens_embed.build import default_model_path
    from lens_embed.defaults import DEFAULT_CLUSTERS

    print(default_model_path(args.clusters or DEFAULT_CLUSTERS))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lens-embed", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in (_add_build, _add_convert, _add_encode, _add_info, _add_explain, _add_default):
        add(subparsers)
    from lens_embed.evaluation.cli import add_eval_commands
    from lens_embed.training.cli import add_training_commands

    add_eval_commands(subparsers)
    add_training_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        code = args.func(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, IndexError) as error:
        print(f"lens-embed {args.command}: error: {error}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
