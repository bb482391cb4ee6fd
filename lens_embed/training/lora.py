"""LoRA on the backbone, the lexicon head frozen, and merging back into a plain model.

The recipe (r 32, alpha 64, dropout 0.1 on every projection) is the authors'. peft is applied
directly to ``model[0].auto_model`` (the Hugging Face backbone inside sentence-transformers'
``Transformer`` module), so the rest of the sentence-transformers model, including the clustered
head in ``model[1]``, is untouched and stays frozen.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from torch import nn

from lens_embed.base.optional import require
from lens_embed.training.config import ADAPTER_DIRNAME
from lens_embed.training.publish import publish_folder

DECODER_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# BERT-style encoders: attention projections plus the attention-output / FFN "dense" layers.
ENCODER_TARGETS = ("query", "key", "value", "dense")


@dataclass
class LoraSettings:
    """The LoRA hyper-parameters; ``target_modules=None`` picks the backbone's projections."""

    r: int = 32
    alpha: int = 64
    dropout: float = 0.1
    target_modules: list[str] | None = field(default=None)


def backbone(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside the first (Transformer) module of a sentence-transformers model."""
    first = model[0]
    if not hasattr(first, "auto_model"):
        raise TypeError(
            f"the first module must be a sentence-transformers Transformer, got {type(first).__name__}"
        )
    return first.auto_model


def set_backbone(model: nn.Module, new_backbone: nn.Module) -> None:
    """Swap the backbone (``auto_model`` is a read-only alias of ``Transformer.model``)."""
    model[0].model = new_backbone


def linear_leaf_names(module: nn.Module) -> set[str]:
    """The last name component of every ``nn.Linear`` in ``module``."""
    return {name.rsplit(".", 1)[-1] for name, child in module.named_modules() if isinstance(child, nn.Linear)}


def default_target_modules(module: nn.Module) -> list[str]:
    """The decoder projections present in ``module``, else the encoder ones; error if neither."""
    names = linear_leaf_names(module)
    for candidates in (DECODER_TARGETS, ENCODER_TARGETS):
        present = [name for name in candidates if name in names]
        if present:
            return present
    raise ValueError(
        f"no known projection layers in {type(module).__name__} (linear layers: {sorted(names)}); "
        "pass target_modules explicitly"
    )


def freeze(module: nn.Module) -> None:
    """Stop gradients to every parameter of ``module``."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)


def _peft() -> ModuleType:
    """peft, part of the ``train`` extra."""
    return require("peft", "train")


def is_peft_backbone(model: nn.Module) -> bool:
    """Whether the backbone currently carries a LoRA adapter."""
    return isinstance(backbone(model), _peft().PeftModel)


def apply_lora(model: nn.Module, settings: LoraSettings | None = None) -> nn.Module:
    """Freeze the whole model, then wrap its backbone with a fresh LoRA adapter (the only trainable
    weights). Returns the peft model that now sits in ``model[0]``."""
    peft = _peft()
    settings = settings or LoraSettings()
    if is_peft_backbone(model):
        raise ValueError("the model already carries a LoRA adapter; merge it before adding another")
    freeze(model)
    base = backbone(model)
    config = peft.LoraConfig(
        task_type=peft.TaskType.FEATURE_EXTRACTION,
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules or default_target_modules(base)),
    )
    peft_model = peft.get_peft_model(base, config)
    set_backbone(model, peft_model)
    return peft_model


def trainable_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters that will receive gradients."""
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad]


def save_adapter(model: nn.Module, directory: str | Path, state_dict: dict | None = None) -> Path:
    """Save only the LoRA adapter (``adapter_config.json`` + weights) of the model's backbone.

    ``state_dict`` (keys of the whole sentence-transformers model, as DeepSpeed ZeRO-3 hands a
    consolidated one to the trainer) is narrowed to the backbone's keys first.
    """
    directory = Path(directory)
    peft_backbone = backbone(model)
    if state_dict is not None:
        state_dict = _backbone_state_dict(state_dict)
    for config in peft_backbone.peft_config.values():  # peft writes sets in hash order: one run, one file
        for name, value in vars(config).items():
            if isinstance(value, set):
                setattr(config, name, sorted(value))
    peft_backbone.save_pretrained(str(directory), state_dict=state_dict)
    return directory


def _backbone_state_dict(state_dict: dict) -> dict:
    """Strip everything up to ``auto_model.``/``0.model.`` so keys match the peft model's own."""
    narrowed = {}
    for key, value in state_dict.items():
        for marker in ("auto_model.", "0.model."):
            if marker in key:
                narrowed[key.split(marker, 1)[1]] = value
                break
    return narrowed


def load_adapter_weights(model: nn.Module, directory: str | Path) -> None:
    """Load saved adapter weights into the model's existing LoRA adapter (resume)."""
    peft = _peft()
    weights = require("peft.utils", "train").load_peft_weights(str(directory), device="cpu")
    result = peft.set_peft_model_state_dict(backbone(model), weights)
    missing_lora = [key for key in getattr(result, "unexpected_keys", []) if "lora_" in key]
    if missing_lora:
        raise RuntimeError(
            f"adapter in {directory} does not fit this model: unexpected keys {missing_lora[:5]}"
        )


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the adapter into the backbone weights in place; the model is plain again."""
    if not is_peft_backbone(model):
        raise ValueError("the model carries no LoRA adapter to merge")
    set_backbone(model, backbone(model).merge_and_unload())
    return model


def attach_adapter(model: nn.Module, adapter_dir: str | Path) -> nn.Module:
    """Wrap the model's backbone with a saved adapter (for merging a trained adapter into a base)."""
    set_backbone(model, _peft().PeftModel.from_pretrained(backbone(model), str(adapter_dir)))
    return model


def merge_and_save(model: nn.Module, adapter_dir: str | Path, output_dir: str | Path) -> Path:
    """Merge ``adapter_dir`` into ``model`` (a freshly loaded base), save it as a sentence-transformers
    model in ``output_dir``, and keep the adapter beside it in ``output_dir/lora_adapter``.

    The model appears in one rename (:func:`lens_embed.training.publish.publish_folder`): a reader
    never sees part of it, an interruption leaves ``output_dir`` as it was, and its files get the
    usual mode. Other entries of an existing ``output_dir`` (a training run's) are kept, except an
    ``adapter_dir`` that lies directly in it: that one now lives on as ``lora_adapter``.
    """
    adapter_dir, output_dir = Path(adapter_dir), Path(output_dir)
    attach_adapter(model, adapter_dir)
    merge_lora(model)
    inside = adapter_dir.resolve().parent == output_dir.resolve()

    def write(staging: Path) -> None:
        model.save(str(staging))
        shutil.copytree(adapter_dir, staging / ADAPTER_DIRNAME)

    publish_folder(output_dir, write, consumed=[adapter_dir.name] if inside else [])
    return output_dir
