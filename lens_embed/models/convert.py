"""Reading the released LENS checkpoints (yibinlei/LENS-d4000, -d8000) safely and exactly.

The released layout: Mistral weights saved from the authors' bidirectional class, a config
that may advertise ``vocab_size`` = K (so ``from_pretrained(..., ignore_mismatched_sizes=True)``
would silently re-initialise the embeddings), and ``lm_head.pth``, a pickled ``nn.Linear`` [K, H].
Here every shape is read from the weight files, every backbone tensor must be present and
match, and the head is read without executing pickled code. A converted model reproduces the authors'
evaluation input, over-long texts included: such a text is cut off with its EOS
(``truncation_keeps_eos: false``), where models built or trained by lens-embed keep the EOS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from safetensors.torch import save_file
from sentence_transformers import SentenceTransformer
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase

from lens_embed.base.defaults import DEFAULT_MAX_SEQ_LENGTH
from lens_embed.base.prompts import QUERY_TOKEN
from lens_embed.base.storage import RELEASED_CHECKPOINTS, cache_dir, cached_directory, scratch_directory
from lens_embed.models.backbone import (
    CheckpointError,
    expected_shapes,
    is_decoder_config,
    iter_tensors,
    make_bidirectional,
    prepare_tokenizer,
    unreadable_weights,
    weight_files,
)
from lens_embed.models.build import assemble_lens_model, ensure_output_dir, save_staged
from lens_embed.models.clustering import assign_to_centroids
from lens_embed.models.pooling import checked_position_top_k
from lens_embed.models.portable import own_code_types
from lens_embed.models.safety import CODE_REFERENCE_KEYS, code_references, is_transformers_class
from lens_embed.modules import LensTransformer, LexiconPooling

HEAD_FILE = "lm_head.pth"
SHARD_BYTES = 2 << 30


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A local directory as is; otherwise a hub repository id, downloaded to the hub cache."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists() or str(name_or_path).startswith((".", "/")) or str(name_or_path).count("/") != 1:
        raise FileNotFoundError(f"checkpoint directory not found: {name_or_path}")
    return Path(snapshot_download(str(name_or_path)))


def read_head(path: Path) -> torch.Tensor:
    """The [K, H] head from ``lm_head.pth``: a pickled Linear, a tensor or a state dict, never arbitrary
    code."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: a released LENS checkpoint keeps its clustered head there")
    try:
        with torch.serialization.safe_globals([torch.nn.Linear]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError or others for bad files
        raise unreadable_weights(path, error) from error
    if isinstance(obj, torch.nn.Linear):
        if obj.bias is not None and bool(obj.bias.detach().abs().max() > 0):
            raise CheckpointError(f"{path} holds a head with a non-zero bias; LENS heads have none")
        weight = obj.weight
    elif isinstance(obj, torch.Tensor):
        weight = obj
    elif isinstance(obj, dict) and isinstance(obj.get("weight"), torch.Tensor):
        weight = obj["weight"]
    else:
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, expected an nn.Linear or a [K, H] tensor"
        )
    if weight.ndim != 2:
        raise CheckpointError(f"{path} holds a tensor of shape {tuple(weight.shape)}, expected [K, hidden]")
    return weight.detach().float()


def iter_checkpoint_tensors(directory: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor of the checkpoint's weight files; a clear error when there are none."""
    files = weight_files(directory)
    if not files:
        raise CheckpointError(f"no weight files (*.safetensors or pytorch_model*.bin) in {directory}")
    yield from iter_tensors(files)


def backbone_name(name: str) -> str | None:
    """Map a causal-LM key to the base model's (``model.layers.0...`` -> ``layers.0...``); None for the LM
    head."""
    if name.startswith("lm_head."):
        return None
    return name[len("model.") :] if name.startswith("model.") else name


def write_shards(tensors: dict[str, torch.Tensor], directory: Path) -> None:
    """safetensors shards of at most SHARD_BYTES with an index, as transformers writes them."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = tensor.contiguous()
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(directory / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map = {}
    for index, shard in enumerate(shards, start=1):
        filename = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(directory / filename), metadata={"format": "pt"})
        weight_map.update({name: filename for name in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index_data = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index_data, indent=2))


def check_backbone_tensors(tensors: dict[str, torch.Tensor], config) -> None:
    """Every parameter the base model expects is present with its exact shape, and nothing else is."""
    expected = expected_shapes(config)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [
        f"{name}: checkpoint {tuple(tensors[name].shape)} vs model {expected[name]}"
        for name in sorted(set(expected) & set(tensors))
        if tuple(tensors[name].shape) != expected[name]
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing[:10])}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected[:10])}")
    if mismatched:
        problems.append(f"mismatched shapes: {'; '.join(mismatched[:10])}")
    if problems:
        raise CheckpointError("the checkpoint does not match its architecture, " + " | ".join(problems))


def convert_checkpoint(
    source: str | Path,
    output_dir: str | Path,
    *,
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    overwrite: bool = False,
    position_top_k: int | None = None,
) -> SentenceTransformer:
    """Convert a released LENS checkpoint into a lens-embed sentence-transformers model at ``output_dir``.

    The output is written to a staging folder renamed into place, and carries no code reference
    (``auto_map``, custom tokenizer classes) from the source: loading it runs only library code.

    Args:
        source: Folder of a checkpoint in the released layout (weights, tokenizer, ``lm_head.pth``)
            or a hub id such as ``yibinlei/LENS-d8000``.
        output_dir: Where to write the converted model (an empty or absent folder).
        max_seq_length: Token limit of the converted model: a longer input is truncated and, as in the
            authors' evaluation, loses its EOS.
        overwrite: Replace a non-empty ``output_dir`` instead of refusing.
        position_top_k: Sparse LENS: each pooled position keeps its k largest cluster logits before the
            max (saved in the pooling module's config); None: the authors' pooling.

    Returns:
        The converted model as a ``SentenceTransformer`` ``[LensTransformer, LexiconPooling]``.
    """
    position_top_k = checked_position_top_k(position_top_k)
    output = Path(output_dir)
    ensure_output_dir(output, overwrite, source=source)
    directory = resolve_checkpoint(source)
    head = read_head(directory / HEAD_FILE)
    tensors: dict[str, torch.Tensor] = {}
    lm_head_rows = None
    for name, tensor in iter_checkpoint_tensors(directory):
        mapped = backbone_name(name)
        if mapped is None:
            lm_head_rows = tensor
        else:
            tensors[mapped] = tensor
    if "embed_tokens.weight" not in tensors:
        raise CheckpointError(
            f"{directory} has no embed_tokens.weight: not a Mistral-style decoder checkpoint"
        )
    vocab_size, hidden_size = tensors["embed_tokens.weight"].shape
    if head.shape[1] != hidden_size:
        raise CheckpointError(f"head width {head.shape[1]} != hidden size {hidden_size} of the backbone")

    config = AutoConfig.from_pretrained(directory)
    if not is_decoder_config(config):
        raise CheckpointError(f"expected a decoder checkpoint, got model_type={config.model_type!r}")
    config.vocab_size = int(vocab_size)  # the real row count, whatever the config advertises
    make_bidirectional(config)
    check_backbone_tensors(tensors, config)

    tokenizer = AutoTokenizer.from_pretrained(directory)
    prepare_tokenizer(tokenizer, decoder=True)
    if len(tokenizer) > vocab_size:
        raise CheckpointError(
            f"tokenizer has {len(tokenizer)} tokens but the embeddings only {vocab_size} rows"
        )
    drop_code_references(config, tokenizer)

    # The backbone is staged apart from the output: the model reads (memory-maps) its weights from there.
    with scratch_directory(output.parent, ".lens-convert-") as backbone_dir:
        config.save_pretrained(backbone_dir)
        write_shards(tensors, backbone_dir)
        tokenizer.save_pretrained(backbone_dir)
        # the authors' evaluation input: an over-long text loses its EOS (tests/evaluation/test_truncation.py)
        transformer = LensTransformer(
            str(backbone_dir), max_seq_length=max_seq_length, truncation_keeps_eos=False
        )
        vocabulary = (
            lm_head_rows if lm_head_rows is not None and lm_head_rows.shape[0] == vocab_size else None
        )
        vocabulary = vocabulary if vocabulary is not None else tensors["embed_tokens.weight"]
        pooling = LexiconPooling(
            n_clusters=head.shape[0],
            hidden_size=hidden_size,
            query_token_id=tokenizer.convert_tokens_to_ids(QUERY_TOKEN),
            next_token_outputs=True,
            vocab_size=vocab_size,
            position_top_k=position_top_k,
        )
        pooling.set_head(head, assign_to_centroids(vocabulary, head))
        model = assemble_lens_model(transformer, pooling)
        model.record_base_model(source)
        save_staged(model, output, overwrite, check=check_no_code_references)
    return model


def check_no_code_references(folder: Path) -> None:
    """Refuse a converted folder that would still make a loader run code named by the source."""
    left = code_references(folder, own_code_types(folder))
    if left:
        raise CheckpointError("the converted model would still ask to run code: " + "; ".join(left))


def drop_code_references(config: PretrainedConfig, tokenizer: PreTrainedTokenizerBase) -> None:
    """Remove what would make a loader import the source's own code (``auto_map`` and the like).

    The conversion runs on transformers' built-in classes, so these references are never needed,
    and carrying them would make the converted model run code named by the source.
    """
    for key in CODE_REFERENCE_KEYS:
        if hasattr(config, key):
            delattr(config, key)
        tokenizer.init_kwargs.pop(key, None)
    if not is_transformers_class(tokenizer.init_kwargs.get("tokenizer_class") or type(tokenizer).__name__):
        tokenizer.init_kwargs.pop("tokenizer_class", None)


def converted_release_path(name: str, cache: str | Path | None = None) -> Path:
    """A released checkpoint converted once into the cache (``$LENS_EMBED_CACHE/converted``).

    Loading the raw release with sentence-transformers would silently build a mean-pooled dense
    model from the Mistral weights; this is the path every loader of a released name goes through.
    Concurrent first loads convert once (a lock), and only a finished conversion is ever in place.
    """
    if name not in RELEASED_CHECKPOINTS:
        raise ValueError(f"{name!r} is not a released LENS checkpoint ({', '.join(RELEASED_CHECKPOINTS)})")
    root = (Path(cache) if cache is not None else cache_dir()) / "converted"
    return cached_directory(root / name.replace("/", "__"), lambda staging: convert_checkpoint(name, staging))
