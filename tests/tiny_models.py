"""Tiny random decoder checkpoints and tokenizers, built on the spot (no hub), for tests and device checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from lens_embed.base.prompts import SPECIAL_TOKENS

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the Reserve Bank of Australia (RBA)?",
    "Oilskin jackets are similar to rubberized waterproofs.",
    "Lexicon-based embeddings map text onto vocabulary clusters.",
    "Large language models attend over every token of a passage.",
    "Given a web search query, retrieve relevant passages that answer the query.",
    "Retrieve semantically similar text.",
    "since 2007 the bank's reputation has been affected by a scandal",
    "a man is playing a guitar on the street while people watch",
] * 20

# The words of the tiny retrieval and STS tasks the benchmark scripts are tested on.
WORDS = ["fox", "dog", "bank", "guitar", "river", "market", "storm", "garden", "violin", "harbour", "zebra"]

RELEASED_K = 24

# The tiny decoder's layer shapes: build_decoder's (at its default hidden size), the released-layout
# checkpoint's, and benchmarks/train_check.py's "tiny" scale.
TINY_SHAPES = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}

ARCHITECTURES = {
    "mistral": (MistralConfig, MistralForCausalLM),
    "llama": (LlamaConfig, LlamaForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
}


def build_tokenizer(eos: bool = False, vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on CORPUS that adds BOS (as Mistral's does) and, if asked, EOS."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    special = ["<unk>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    end = " </s>" if eos else ""
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"<s> $A{end}",
        pair=f"<s> $A{end} <s> $B{end}",
        special_tokens=[("<s>", tokenizer.token_to_id("<s>")), ("</s>", tokenizer.token_to_id("</s>"))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )


def build_decoder(
    directory: Path,
    arch: str = "mistral",
    seed: int = 0,
    hidden_size: int = 32,
    tokenizer: PreTrainedTokenizerFast | None = None,
    **shape: int,
) -> Path:
    """Save a tiny random causal LM (with an untied LM head) and its tokenizer to ``directory``.

    ``tokenizer`` (default: :func:`build_tokenizer`'s) sets the vocabulary; ``shape`` overrides the
    tiny layer shapes (e.g. ``num_hidden_layers``), so benchmarks build larger models the same way.
    """
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer()
    config_cls, model_cls = ARCHITECTURES[arch]
    config = config_cls(
        **{
            "vocab_size": len(tokenizer),
            **TINY_SHAPES,
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "max_position_embeddings": 512,
            **shape,
        },
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model_cls(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_encoder(directory: Path, tokenizer_path: Path, seed: int = 0, hidden_size: int = 32) -> Path:
    """Save a tiny random BERT encoder (MiniLM's architecture, two layers) with the tokenizer found at
    ``tokenizer_path`` (e.g. the bundled MiniLM's WordPiece tokenizer) to ``directory``."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def authors_tokenizer(eos: bool) -> PreTrainedTokenizerFast:
    """The tokenizer as the authors prepared it: LENS special tokens, pad = unk."""
    tokenizer = build_tokenizer(eos=eos)
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    tokenizer.pad_token = tokenizer.unk_token
    return tokenizer


def write_released_checkpoint(directory: Path, tokenizer_dir: Path | None = None) -> Path:
    """A tiny checkpoint laid out like yibinlei/LENS-d8000 (config advertising vocab_size = K).

    Args:
        directory: where to write it.
        tokenizer_dir: a released-like tokenizer folder, copied byte for byte (default: the authors'
            preparation of the tiny tokenizer).
    """
    if tokenizer_dir is None:
        tokenizer = authors_tokenizer(eos=True)  # the released tokenizer.json appends EOS itself
    else:
        shutil.copytree(tokenizer_dir, directory)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = MistralConfig(vocab_size=len(tokenizer), **TINY_SHAPES, tie_word_embeddings=False)
    torch.manual_seed(1)
    MistralForCausalLM(config).save_pretrained(directory)
    if tokenizer_dir is None:
        tokenizer.save_pretrained(directory)
    raw = json.loads((directory / "config.json").read_text())
    raw.update(vocab_size=RELEASED_K, architectures=["MistralBiForCausalLM"])
    (directory / "config.json").write_text(json.dumps(raw))
    torch.manual_seed(2)
    head = torch.nn.Linear(32, RELEASED_K, bias=False)
    torch.save(head, directory / "lm_head.pth")
    return directory


def offline_hub_with_release(released: Path, hub: Path, name: str = "yibinlei/LENS-d8000") -> Path:
    """A Hugging Face hub cache at ``hub`` holding ``released`` as the one snapshot of ``name`` (use with
    ``HF_HUB_CACHE=hub`` and ``HF_HUB_OFFLINE=1``, so the released name resolves without a network)."""
    sha = "0" * 40
    repo = hub / f"models--{name.replace('/', '--')}"
    shutil.copytree(released, repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    return hub
