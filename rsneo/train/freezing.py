"""Which parameters train in each stage (NEO's recipe, extended with the S axis).

The model names its parameter roles (`RSNeoForCausalLM.parameter_groups`: vision, prebuffer,
native_positions, post_llm, language); a stage lists the roles that train. Stage 1 (NEO's pre-buffer
stage) trains `vision`, `prebuffer` and `native_positions` (the new H/W/S projections and QK-norms
inside the post-LLM layers), so the post-LLM and the language embeddings/head stay frozen; stages 2 and
3 train `all`.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from rsneo.errors import InputError

ROLES = ("vision", "prebuffer", "native_positions", "post_llm", "language")


def stage_roles(trainable: str | Sequence[str]) -> tuple[str, ...]:
    """The roles a stage trains: a list of role names, where `all` (or `"all"` alone) means every role."""
    roles = (trainable,) if isinstance(trainable, str) else tuple(str(r) for r in trainable)
    if "all" in roles:
        return ROLES
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise InputError(f"stage.trainable: expected 'all' or roles from {list(ROLES)}, got {unknown}")
    return roles


def apply_stage(model: nn.Module, trainable: str | Sequence[str]) -> set[str]:
    """Set `requires_grad` on every parameter of `model` (an `RSNeoForCausalLM`); returns the trainable
    names."""
    roles = stage_roles(trainable)
    groups = model.parameter_groups()
    train = {name for role in roles for name in groups[role]}
    for name, param in model.named_parameters():
        param.requires_grad_(name in train)
    return train


def trainable_names(module: nn.Module) -> set[str]:
    return {name for name, param in module.named_parameters() if param.requires_grad}
