"""Distribution strategies: DDP and FSDP for Lightning, from the trainer config.

FSDP shards every decoder layer (`NativeLayer`) as one unit, which is how NEO-2.2B / NEO-9B fit: parameters,
gradients and optimizer states are split over all GPUs, and each layer is gathered only while it runs.
Activation checkpointing (recompute a layer's activations in the backward pass) is applied per layer too.
"""

from __future__ import annotations

from typing import Any


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
            activation_checkpointing_policy={NativeLayer} if model_cfg.get("activation_checkpointing") else None,
            sharding_strategy=fsdp.get("sharding_strategy", "FULL_SHARD"),
            state_dict_type=fsdp.get("state_dict_type", "sharded"),
            cpu_offload=bool(fsdp.get("cpu_offload", False)),
        )
    return name
