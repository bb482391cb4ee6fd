"""Backbone preparation: bidirectional decoders (or encoders), the LENS tokenizer, the vocabulary matrix.

Bidirectionality uses transformers' own switch (``config.is_causal = False``, honoured by its
mask builders under eager, sdpa and flash attention) and is saved in ``config.json``, so a
reload of the saved model stays bidirectional.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoModel, PretrainedConfig, PreTrainedTokenizerBase
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)
from transformers.utils import cached_file

from lens_embed.base.defaults import ATTN_IMPLEMENTATIONS, DTYPES
from lens_embed.base.prompts import SPECIAL_TOKENS

LM_HEAD_NAMES = ("lm_head.weight",)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """A torch dtype from its name (one of :data:`lens_embed.base.defaults.DTYPES`) or itself."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)} or a torch.dtype, got {dtype!r}")
    return getattr(torch, dtype)


def backbone_kwargs(
    dtype: str | torch.dtype | None = None, attn_implementation: str | None = None
) -> dict[str, Any]:
    """transformers' ``from_pretrained`` kwargs for a backbone's dtype and attention kernel, validated;
    None leaves each to the checkpoint and to transformers.

    Args:
        dtype: one of :data:`lens_embed.base.defaults.DTYPES` or a torch.dtype.
        attn_implementation: one of :data:`lens_embed.base.defaults.ATTN_IMPLEMENTATIONS`.
    """
    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = resolve_dtype(dtype)
    if attn_implementation is not None:
        if attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"attn_implementation must be one of {', '.join(ATTN_IMPLEMENTATIONS)}, "
                f"got {attn_implementation!r}"
            )
        kwargs["attn_implementation"] = attn_implementation
    return kwargs


def is_decoder_config(config: PretrainedConfig) -> bool:
    """A causal-LM-only architecture (Mistral, Llama, Qwen2...), as opposed to a BERT-style encoder."""
    model_type = config.model_type
    return (
        model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )


def is_bidirectional(config: PretrainedConfig) -> bool:
    """Whether the backbone attends both ways: an encoder, or a decoder whose causal mask was removed."""
    return not is_decoder_config(config) or getattr(config, "is_causal", True) is False


def make_bidirectional(config: PretrainedConfig) -> PretrainedConfig:
    """Switch a decoder config to bidirectional attention, the way transformers 5 reads it."""
    config.is_causal = False
    config.use_cache = False
    return config


def appends_eos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether plain tokenisation ends in exactly one EOS."""
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    eos = tokenizer.eos_token_id
    return eos is not None and len(ids) >= 1 and ids[-1] == eos and (len(ids) < 2 or ids[-2] != eos)


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, decoder: bool) -> int:
    """Give a tokenizer the authors' input format; returns how many tokens were added to the vocabulary.

    * the special tokens ``<instruct>``, ``<query>``, ``<response>``;
    * pad = unk (else eos), as the authors set it;
    * decoders: BOS + text + exactly one EOS from the tokenizer's own post-processor, so that
      truncation keeps the EOS (the authors appended the string "</s>" instead).
    """
    before = len(tokenizer)
    missing = [token for token in SPECIAL_TOKENS if token not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": missing}, replace_extra_special_tokens=False
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    if decoder and not appends_eos(tokenizer):
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has no EOS token; a LENS decoder needs one to end every input")
        if not hasattr(type(tokenizer), "add_eos_token"):
            raise ValueError(
                f"cannot make {type(tokenizer).__name__} append EOS: use a fast (tokenizers) tokenizer"
            )
        starts_with_bos = (
            tokenizer.bos_token_id is not None and tokenizer("a")["input_ids"][0] == tokenizer.bos_token_id
        )
        tokenizer.add_bos_token = starts_with_bos
        tokenizer.add_eos_token = True
        if not appends_eos(tokenizer):
            raise ValueError(f"could not make {type(tokenizer).__name__} append exactly one EOS")
    return len(tokenizer) - before


def resize_embeddings(backbone: torch.nn.Module, vocab_size: int, seed: int) -> None:
    """Grow the input embeddings to ``vocab_size``, initialising new rows reproducibly.

    New rows (the LENS special tokens) are seeded, so two builds with one seed are the same model.
    Decoders get the authors' rows: N(0, initializer_range), transformers' own initialisation of new
    rows (0.02 for Mistral). Encoders get the existing rows' per-dimension mean and standard
    deviation, which the embedded default (and its published scores) was built with.
    """
    old = backbone.get_input_embeddings().weight.shape[0]
    backbone.resize_token_embeddings(vocab_size, mean_resizing=False)
    if vocab_size <= old:
        return
    weight = backbone.get_input_embeddings().weight
    with torch.no_grad():
        existing = weight[:old].float()
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(vocab_size - old, weight.shape[1], generator=generator)
        if is_decoder_config(backbone.config):
            rows = noise * backbone.config.initializer_range
        else:
            rows = existing.mean(dim=0) + noise * existing.std(dim=0)
        weight[old:] = rows.to(weight.dtype).to(weight.device)


class CheckpointError(ValueError):
    """Weights that cannot be used exactly: missing, mismatched, corrupt or unsafe (the message names the
    file)."""


def weight_files(model_name_or_path: str | os.PathLike, subfolder: str = "", **hub_kwargs: Any) -> list[Path]:
    """The weight files (safetensors, else PyTorch .bin; sharded or not) of a local folder or hub repository.

    The one place that knows how transformers lays weights out: a shard index lists the shards,
    otherwise a single file. Empty when the folder has none. ``hub_kwargs`` (``revision``, ``token``,
    ``cache_dir``, ``local_files_only``) go to transformers' ``cached_file``.
    """
    options = {"subfolder": subfolder, **hub_kwargs}
    for index_name, single_name in (
        ("model.safetensors.index.json", "model.safetensors"),
        ("pytorch_model.bin.index.json", "pytorch_model.bin"),
    ):
        index = cached_file(
            str(model_name_or_path), index_name, _raise_exceptions_for_missing_entries=False, **options
        )
        if index is not None:
            try:
                with open(index, encoding="utf-8") as handle:
                    shards = sorted(set(json.load(handle)["weight_map"].values()))
            except (
                ValueError,
                KeyError,
                TypeError,
                AttributeError,
            ) as error:  # bad JSON or not a shard index
                raise CheckpointError(
                    f"{index}: not a valid shard index ({type(error).__name__}: {error})"
                ) from error
            return [Path(cached_file(str(model_name_or_path), shard, **options)) for shard in shards]
        single = cached_file(
            str(model_name_or_path), single_name, _raise_exceptions_for_missing_entries=False, **options
        )
        if single is not None:
            return [Path(single)]
    return []


def unreadable_weights(file: str | os.PathLike, error: Exception) -> CheckpointError:
    """One line naming a PyTorch weight file that ``torch.load(weights_only=True)`` refused, and why.

    torch's own messages span many lines and suggest ``weights_only=False``, which would run the
    pickled code; this says what is wrong with the file instead.
    """
    if isinstance(error, pickle.UnpicklingError):
        why = (
            "not a plain tensor file (it holds pickled objects other than tensors, which are never "
            "unpickled since that could run code, or it is not a PyTorch file at all)"
        )
    elif isinstance(error, EOFError):
        why = "the file is empty or truncated"
    else:
        first_line = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        why = f"damaged ({first_line.split('. ')[0]})"
    return CheckpointError(f"{file}: refusing to load: {why}")


def _state_dict(file: str) -> dict[str, torch.Tensor]:
    """A ``.bin`` state dict read with ``weights_only=True`` (no pickled code runs), memory-mapped when
    it is in torch's zip format (older files cannot be)."""
    try:
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(file))
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError or others for bad files
        raise unreadable_weights(file, error) from error
    if not isinstance(state, dict) or not all(isinstance(tensor, torch.Tensor) for tensor in state.values()):
        raise CheckpointError(f"{file}: holds a {type(state).__name__}, not a state dict of named tensors")
    return state


def iter_tensors(
    files: Iterable[str | os.PathLike], names: Iterable[str] | None = None
) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` for every tensor of the weight files, or only those in ``names``, read lazily.

    safetensors files are opened one tensor at a time; ``.bin`` files are read with
    ``weights_only=True`` (no pickled code runs). A damaged file raises CheckpointError naming it.
    """
    wanted = None if names is None else set(names)
    for file in map(str, files):
        if file.endswith(".safetensors"):
            try:
                with safe_open(file, framework="pt") as handle:
                    for name in handle.keys():
                        if wanted is None or name in wanted:
                            yield name, handle.get_tensor(name)
            except SafetensorError as error:
                raise CheckpointError(f"{file}: corrupt safetensors file ({error})") from error
            continue
        for name, tensor in _state_dict(file).items():
            if wanted is None or name in wanted:
                yield name, tensor


def stored_shapes(files: Iterable[str | os.PathLike]) -> dict[str, tuple[Path, tuple[int, ...]]]:
    """Every stored tensor's name -> (its file, its shape); safetensors files are read only in their headers.

    Opening a file checks it: a damaged or truncated safetensors file, or a ``.bin`` that is not a
    plain state dict, raises CheckpointError naming it.
    """
    shapes: dict[str, tuple[Path, tuple[int, ...]]] = {}
    for file in map(str, files):
        if file.endswith(".safetensors"):
            try:
                with safe_open(file, framework="pt") as handle:
                    shapes.update(
                        (name, (Path(file), tuple(handle.get_slice(name).get_shape())))
                        for name in handle.keys()
                    )
            except SafetensorError as error:
                raise CheckpointError(f"{file}: corrupt safetensors file ({error})") from error
        else:
            shapes.update((name, (Path(file), tuple(tensor.shape))) for name, tensor in iter_tensors([file]))
    return shapes


def expected_shapes(config: PretrainedConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor name -> shape of the base model a config describes (built on the meta device: no
    memory)."""
    with torch.device("meta"):
        return {
            name: tuple(tensor.shape) for name, tensor in AutoModel.from_config(config).state_dict().items()
        }


def read_tensor(files: Iterable[str | os.PathLike], names: Iterable[str]) -> torch.Tensor | None:
    """The first tensor found under one of ``names`` in the weight files, without loading the rest."""
    return next((tensor for _, tensor in iter_tensors(files, names)), None)


def vocabulary_matrix(
    model_name_or_path: str | Path, backbone: torch.nn.Module, decoder: bool
) -> torch.Tensor:
    """The rows to cluster: the LM head of a decoder (read from its weight files), else the input embeddings.

    A tied or absent head (and every encoder) falls back to the input-embedding matrix.
    """
    if decoder:
        head = read_tensor(weight_files(model_name_or_path), LM_HEAD_NAMES)
        if head is not None:
            return head.float()
    return backbone.get_input_embeddings().weight.detach().float()
