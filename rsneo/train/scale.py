"""Distribution strategies: DDP and FSDP for Lightning, from the trainer config.

FSDP shards every decoder layer (`NativeLayer`) as one unit, which is how NEO-2.2B / NEO-9B fit:
parameters, gradients and optimizer states are split over all GPUs, and each layer is gathered only
while it runs. Under FSDP a fresh model is built on the `meta` device (shapes only, no memory,
`meta_model`); FSDP then materialises it unit by unit (`materialize_unit`: storage on the rank's device,
the model's own initialisation, then sharding), so no rank ever holds more than its shard plus one
unit. Activation checkpointing (recompute a layer's activations in the backward pass) and
`torch.compile` are applied per layer by the training module, without renaming parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from torch import nn

from rsneo.model.backbone import NativeLayer

INIT_ATTR = "_rsneo_init"  # on each submodule of a meta-built model: how the model initialises it


def build_strategy(trainer_cfg: dict[str, Any], model_cfg: dict[str, Any]) -> Any:
    """A Lightning strategy object (or name) for `trainer.strategy`: auto, ddp, fsdp."""
    name = trainer_cfg["strategy"]
    if name == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        backend = "gloo" if trainer_cfg["accelerator"] == "cpu" else "nccl"
        return DDPStrategy(process_group_backend=backend, find_unused_parameters=False)
    if name == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        fsdp = trainer_cfg["fsdp"]
        cpu = trainer_cfg["accelerator"] == "cpu"
        return (cpu_fsdp_strategy() if cpu else FSDPStrategy)(
            auto_wrap_policy={NativeLayer},
            param_init_fn=materialize_unit,  # used only when the model was built on the meta device
            sharding_strategy=fsdp["sharding_strategy"],
            state_dict_type=fsdp["state_dict_type"],
            cpu_offload=bool(fsdp["cpu_offload"]),
            **({"process_group_backend": "gloo"} if cpu else {}),
        )
    return name


def cpu_fsdp_strategy() -> type:
    """Lightning's FSDP strategy made to run on CPUs (gloo), for tests of the sharded set-up only.

    Lightning refuses FSDP without a GPU (its check lets subclasses pass) and hands torch's FSDP no device on
    a CPU, which torch then refuses too; given `device_id=cpu` explicitly, torch's FSDP shards on the CPU.
    """
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp import FullyShardedDataParallel

    class CPUFSDPStrategy(FSDPStrategy):
        def _setup_model(self, model: nn.Module) -> nn.Module:
            wrapped = FullyShardedDataParallel(
                module=model,
                cpu_offload=self.cpu_offload,
                mixed_precision=self.mixed_precision_config,
                sharding_strategy=self.sharding_strategy,
                device_id=torch.device("cpu"),
                **self.kwargs,
            )
            from lightning.pytorch.strategies.fsdp import _setup_activation_checkpointing

            _setup_activation_checkpointing(wrapped, self._activation_checkpointing_kwargs)
            return wrapped

    return CPUFSDPStrategy


def enable_activation_checkpointing(model: nn.Module) -> int:
    """Recompute each decoder layer's activations in the backward pass instead of keeping them.

    The layer's `forward` is wrapped on the instance, so parameter names (and checkpoints) are unchanged.
    Returns the number of layers wrapped.
    """
    from torch.utils.checkpoint import checkpoint

    count = 0
    for layer in model.modules():
        if isinstance(layer, NativeLayer) and "forward" not in vars(layer):
            plain = layer.forward
            layer.forward = partial(checkpoint, plain, use_reentrant=False)
            count += 1
    return count


def compile_layers(model: nn.Module) -> int:
    """`torch.compile` each decoder layer in place (names unchanged); CUDA only, where it pays off."""
    layers = [m for m in model.modules() if isinstance(m, NativeLayer)]
    for layer in layers:
        layer.compile()
    return len(layers)


def fsdp_builds_on_meta(trainer_cfg: dict[str, Any], model_cfg: dict[str, Any]) -> bool:
    """A fresh (not `init_from`) model under FSDP is built on the meta device."""
    return trainer_cfg["strategy"] == "fsdp" and not model_cfg["init_from"]


@contextmanager
def meta_model(enabled: bool = True) -> Iterator[None]:
    """Build modules on the meta device (shapes and dtypes only) when `enabled`."""
    if not enabled:
        yield
        return
    with torch.device("meta"):
        yield


def tag_for_materialization(model: nn.Module, init: Callable[[str, nn.Module], None]) -> None:
    """Remember on every submodule of a meta-built `model` how `init(name, module)` initialises it, so that
    `materialize_unit` can initialise whichever unit FSDP hands it (it gets modules, not names)."""
    for name, module in model.named_modules():
        vars(module)[INIT_ATTR] = partial(init, name)  # a plain attribute: not a submodule, not in state_dict


def materialize_unit(module: nn.Module) -> None:
    """FSDP's `param_init_fn`: give the meta tensors under `module` real, uninitialised storage on this rank's
    device, then initialise them: `reset_parameters` (children before parents, so a parent's rule wins)
    and the model's own rule (`tag_for_materialization`). Tied parameters stay tied. Modules already
    materialised (earlier units, real heads) are left alone."""
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else "cpu"
    fresh: dict[int, nn.Parameter] = {}
    touched: list[nn.Module] = []
    for sub in module.modules():
        meta = False
        for key, param in list(sub._parameters.items()):
            if param is not None and param.is_meta:
                if id(param) not in fresh:
                    data = torch.empty_like(param, device=device)
                    fresh[id(param)] = nn.Parameter(data, requires_grad=param.requires_grad)
                sub._parameters[key] = fresh[id(param)]
                meta = True
        for key, buffer in list(sub._buffers.items()):
            if buffer is not None and buffer.is_meta:
                sub._buffers[key] = torch.empty_like(buffer, device=device)
                meta = True
        if meta:
            touched.append(sub)
    if not touched:
        return
    with torch.no_grad():
        for sub in reversed(touched):
            if callable(getattr(sub, "reset_parameters", None)):
                sub.reset_parameters()
        for sub in touched:
            init = vars(sub).get(INIT_ATTR)
            if init is not None:
                init(sub)
