"""The model verbs at work: each takes its options instance (:mod:`lens_embed.commands.model_options`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lens_embed.base.defaults import DEFAULT_CLUSTERS, minilm_path
from lens_embed.base.inputs import read_texts
from lens_embed.base.options import keywords
from lens_embed.base.storage import atomic_write, refuse_overlap
from lens_embed.commands.model_options import (
    BuildOptions,
    CardOptions,
    ConvertOptions,
    DefaultOptions,
    EncodeOptions,
    ExplainOptions,
    ExportOptions,
    ExportTargetOptions,
    InfoOptions,
    SetPoolingOptions,
    SparseEncoderOptions,
)
from lens_embed.evaluation.results import load_eval_rows, model_revision
from lens_embed.models.backbone import is_bidirectional
from lens_embed.models.build import build_lens_model, set_position_top_k
from lens_embed.models.card import write_card
from lens_embed.models.convert import convert_checkpoint
from lens_embed.models.embedded import default_model_path, untrained_default_path
from lens_embed.models.export import export_model
from lens_embed.models.loading import load_lens_model
from lens_embed.models.model import encode
from lens_embed.models.sparse import write_sparse_encoder


def run_build(options: BuildOptions) -> None:
    """Build a LENS model from a base model and save it."""
    base = minilm_path() if options.base == "minilm" else options.base
    model = build_lens_model(
        base,
        options.clusters,
        options.output,
        dense_pooling=options.dense,
        **keywords(options, build_lens_model),
    )
    print(f"saved LENS model ({model.get_embedding_dimension()} dimensions) to {options.output}")


def run_convert(options: ConvertOptions) -> None:
    """Convert a released checkpoint."""
    model = convert_checkpoint(options.source, options.output, **keywords(options, convert_checkpoint))
    print(f"converted to {options.output} ({model.get_embedding_dimension()} dimensions)")


def run_set_pooling(options: SetPoolingOptions) -> None:
    """Rewrite a saved folder's per-position top-k."""
    config = set_position_top_k(options.model, options.position_top_k)
    state = "off" if options.position_top_k is None else f"k = {options.position_top_k}"
    print(f"{options.model}: per-position top-k {state} ({config})")


def save_array(array: np.ndarray, path: str | Path, overwrite: bool) -> None:
    """Write a ``.npy`` file atomically (:func:`lens_embed.base.storage.atomic_write`), with the usual file
    mode.

    Args:
        array: what to save.
        path: the target file.
        overwrite: replace an existing file; otherwise it is kept and this raises FileExistsError.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    atomic_write(target, lambda stream: np.save(stream, array))


def run_encode(options: EncodeOptions) -> None:
    """Embed the texts of a file into a ``.npy`` array."""
    refuse_overlap(options.out, "--out", options.model, "the model")  # --overwrite could replace a model file
    if Path(options.out).exists() and not options.overwrite:
        raise FileExistsError(f"{options.out} exists; pass --overwrite to replace it")
    texts = read_texts(options.texts)
    model = load_lens_model(options.model, **options.load_keywords())
    embeddings = encode(model, texts, show_progress_bar=True, **keywords(options, encode))
    save_array(embeddings, options.out, options.overwrite)
    print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {options.out}")


def run_explain(options: ExplainOptions) -> None:
    """Print a text's top clusters, and those it shares with a document."""
    model = load_lens_model(options.model, **options.load_keywords())
    model.check_top(options.top)
    embedding = encode(model, [options.text], **keywords(options, encode))[0]
    print(f"top clusters of {options.text!r}:")
    for dim in model.top_dimensions(embedding, k=options.top):
        print(f"  {dim.index:5d}  {dim.weight:.3f}  {' '.join(dim.tokens)}")
    if options.document is not None:
        document = encode(model, [options.document])[0]
        print(f"cosine similarity with the document: {float(embedding @ document):.4f}; shared clusters:")
        for dim in model.match_dimensions(embedding, document, k=options.top):
            print(f"  {dim.index:5d}  {dim.weight:.4f}  {' '.join(dim.tokens)}")


def run_info(options: InfoOptions) -> None:
    """Print what a model is, as JSON."""
    model = load_lens_model(options.model, **options.load_keywords())
    config = model[0].auto_model.config
    info = {
        "lens": model.is_lens_model(),
        "backbone": config.model_type,
        "bidirectional": is_bidirectional(config),
        "embedding_dimension": model.get_embedding_dimension(),
        "max_seq_length": model.max_seq_length,
        "prompts": sorted(model.prompts),
    }
    if info["lens"]:
        pooling = model.lexicon()
        info.update(
            clusters=pooling.n_clusters,
            dense=pooling.dense_pooling,
            dense_weight=pooling.dense_weight,
            position_top_k=pooling.position_top_k,
        )
    print(json.dumps(info, indent=2))


def export_calibration(options: ExportTargetOptions) -> list[str] | None:
    """Check ``--backend`` / ``--quantize`` / ``--calibration`` before any model work; the calibration
    texts (OpenVINO's static int8 only)."""
    if options.backend is None:
        if options.quantize is not None or options.calibration is not None:
            raise ValueError("--quantize and --calibration need --backend onnx or openvino")
        return None
    static = options.backend == "openvino" and options.quantize == "int8"
    if static != (options.calibration is not None):
        raise ValueError(
            "--backend openvino --quantize int8 needs --calibration FILE (typical texts to calibrate on)"
            if static
            else "--calibration applies to --backend openvino --quantize int8 only"
        )
    return read_texts(options.calibration) if static else None


def run_default(options: DefaultOptions) -> None:
    """Print the embedded default's path (assembled or built once), exported when asked."""
    if options.clusters is not None and not options.untrained:
        raise ValueError(
            f"the trained default has K = {DEFAULT_CLUSTERS}; --clusters needs --untrained "
            "(or lens-embed build minilm OUT --clusters K)"
        )
    if options.verify and options.untrained:
        raise ValueError("--verify checks the trained default's cache entry; not --untrained")
    calibration = export_calibration(options)
    path = (
        untrained_default_path(options.clusters or DEFAULT_CLUSTERS)
        if options.untrained
        else default_model_path(verify=options.verify)
    )
    if options.backend is not None:
        export_model(path, options.backend, options.quantize, calibration)  # once: a valid export is kept
    print(path)


def run_export(options: ExportOptions) -> None:
    """Export a model folder's backbone for a CPU backend."""
    path = export_model(options.model, options.backend, options.quantize, export_calibration(options))
    print(f"exported {path}")


def run_card(options: CardOptions) -> None:
    """The card of a saved model: its facts (the loaded model), its rows (evaluation reads the results
    folder, by default the model's results under this folder's content revision), its provenance."""
    facts = load_lens_model(options.model, **options.load_keywords()).facts()
    rows = None
    if options.results is not None:
        revision = None if options.results_name else model_revision(options.model)
        rows = load_eval_rows(options.results, options.results_name, revision)
    target = write_card(
        options.model,
        facts,
        rows=rows,
        model_id=options.model_id,
        base_model=options.base_model,
        license=options.license,
    )
    print(f"wrote {target}")


def run_sparse_encoder(options: SparseEncoderOptions) -> None:
    """Write a LENS model's SparseEncoder folder."""
    path = write_sparse_encoder(
        options.model,
        options.output,
        tokens=options.cluster_tokens,
        **keywords(options, write_sparse_encoder),
        **options.load_keywords(),
    )
    print(f"wrote the SparseEncoder folder of {options.model} to {path}")
