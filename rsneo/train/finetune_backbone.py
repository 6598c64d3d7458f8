"""Which part of the backbone learns with a fine-tuned head (`--train`), and LoRA adapters merged on export.

- `heads`: the backbone is frozen and runs without gradients (the default: cheapest, the backbone's other
  heads and answers are untouched);
- `prebuffer`: the spectral patch embedding and the pre-buffer layers (NEO's stage 1 parts that read pixels);
- `last-N`: the last N transformer layers;
- `all`: every backbone parameter;
- `lora`: low-rank adapters (rank `lora_rank`) on every linear layer of the transformer layers; the base
  weights stay frozen and the adapters are merged into them when the model folder is written, so the folder
  is an ordinary `RSNeoForCausalLM`.
"""

from __future__ import annotations

import math
import re

import torch
from torch import Tensor, nn

from rsneo.errors import InputError
from rsneo.train.freezing import apply_stage

TRAIN_MODES = "heads, prebuffer, last-N (e.g. last-2), all or lora"


class LoRALinear(nn.Module):
    """`base(x) + scale * up(down(x))` with `base` frozen; `up` starts at zero, so training starts from the
    base model exactly."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.down = nn.Parameter(torch.empty(rank, base.in_features, dtype=base.weight.dtype))
        self.up = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.down, a=math.sqrt(5))
        self.scale = (alpha or rank) / rank

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + (x @ self.down.T.to(x.dtype)) @ self.up.T.to(x.dtype) * self.scale

    def merged(self) -> nn.Linear:
        """The base layer with the adapter added into its weight."""
        with torch.no_grad():
            delta = (self.up.float() @ self.down.float()) * self.scale
            self.base.weight.add_(delta.to(self.base.weight.dtype))
        return self.base


def add_lora(model: nn.Module, rank: int) -> int:
    """Wrap every linear layer of the transformer layers of `model` in a `LoRALinear`; returns how many."""
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and name.startswith("backbone.layers.")]  # fmt: skip
    for name, module in targets:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, LoRALinear(module, rank))
    return len(targets)


def merge_lora(model: nn.Module) -> None:
    """Replace every `LoRALinear` of `model` by its merged base layer (the plain model's key names)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.merged())


def set_trainable(model: nn.Module, mode: str, lora_rank: int = 8) -> str:
    """Freeze `model` (an `RSNeoForCausalLM`) except what `mode` trains; returns a sentence saying what."""
    mode = mode.strip().lower()
    model.requires_grad_(False)
    if mode == "heads":
        return "the head only (backbone frozen)"
    if mode == "prebuffer":
        apply_stage(model, ["vision", "prebuffer"])
        return "the head, the patch embedding and the pre-buffer layers"
    if mode == "all":
        model.requires_grad_(True)
        return "the head and the whole backbone"
    if mode == "lora":
        if lora_rank < 1:
            raise InputError(f"finetune.lora_rank: expected a positive rank, got {lora_rank}")
        count = add_lora(model, lora_rank)
        return f"the head and rank-{lora_rank} LoRA adapters on {count} linear layers of the backbone"
    match = re.fullmatch(r"last-(\d+)", mode)
    layers = model.config.num_layers
    if match is None or not 1 <= int(match.group(1)) <= layers:
        raise InputError(f"--train: expected {TRAIN_MODES} (N from 1 to {layers}), got {mode!r}")
    first = layers - int(match.group(1))
    for name, param in model.named_parameters():
        index = name.split(".")[2] if name.startswith("backbone.layers.") else None
        param.requires_grad_(index is not None and int(index) >= first or name.startswith("backbone.norm."))
    return f"the head and the last {layers - first} of {layers} backbone layers"


def backbone_trains(model: nn.Module) -> bool:
    return any(p.requires_grad for p in model.parameters())
