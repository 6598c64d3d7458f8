"""Distribution strategies: DDP and FSDP for Lightning, from the trainer config.

FSDP shards every decoder layer (`NativeLayer`) as one unit, which is how NEO-2.2B / NEO-9B fit:
parameters, gradients and optimizer states are split over all GPUs, and each layer is gathered only
while it runs. Activation checkpointing (recompute a layer's activations in the backward pass) and
`torch.compile` are applied per layer by the training module, without renaming parameters.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import nn


def build_strategy(trainer_cfg: dict[str, Any], model_cfg: dict[str, Any]) -> Any:
    """A Lightning strategy object (or name) for `trainer.strategy`: auto, ddp, fsdp."""
    name = trainer_cfg.get("strategy", "auto")
    if name == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        backend = "gloo" if trainer_cfg["accelerator"] == "cpu" else "nccl"
        return DDPStrategy(process_group_backend=backend, find_unused_parameters=False)
    if name == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        from rsneo.model.backbone import NativeLayer

        fsdp = dict(trainer_cfg.get("fsdp") or {})
        return FSDPStrategy(
            auto_wrap_policy={NativeLayer},
            sharding_strategy=fsdp.get("sharding_strategy", "FULL_SHARD"),
            state_dict_type=fsdp.get("state_dict_type", "sharded"),
            cpu_offload=bool(fsdp.get("cpu_offload", False)),
        )
    return name


def enable_activation_checkpointing(model: nn.Module) -> int:
    """Recompute each decoder layer's activations in the backward pass instead of keeping them.

    The layer's `forward` is wrapped on the instance, so parameter names (and checkpoints) are unchanged.
    Returns the number of layers wrapped.
    """
    from torch.utils.checkpoint import checkpoint

    from rsneo.model.backbone import NativeLayer

    count = 0
    for layer in model.modules():
        if isinstance(layer, NativeLayer) and "forward" not in vars(layer):
            plain = layer.forward
            layer.forward = partial(checkpoint, plain, use_reentrant=False)
            count += 1
    return count


def compile_layers(model: nn.Module) -> int:
    """`torch.compile` each decoder layer in place (names unchanged); CUDA only, where it pays off."""
    from rsneo.model.backbone import NativeLayer

    layers = [m for m in model.modules() if isinstance(m, NativeLayer)]
    for layer in layers:
        layer.compile()
    return len(layers)
