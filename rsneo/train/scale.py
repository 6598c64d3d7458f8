"""Distribution strategies: DDP, and FSDP2 (fully sharded data parallel) for NEO-2.2B / NEO-9B.

FSDP runs on Lightning's `ModelParallelStrategy` with torch's FSDP2 (`fully_shard`), every device one
data-parallel rank (`ShardedDataParallel`). `shard_training_module` (the module's `configure_model`) makes
every decoder layer (`NativeLayer`) one FSDP unit and the training module the root unit (embeddings, patch
embedding, final norm, the heads and the band decoder): parameters, gradients and optimizer states are split
over all ranks, each layer is gathered only while it runs, and parameters keep their names and shapes
(DTensors), so stage freezing, weight-decay groups and checkpoints see the model as it is.

The model is built on the `meta` device (shapes only), sharded there, and each rank then allocates only its
own shard and fills it (`fill_shards`): from the `model.init_from` folder, reading only its own rows of each
tensor (safetensors slices: no rank ever reads or holds the whole checkpoint), or from a freshly initialised
copy of one unit at a time (every rank seeded alike, so all draw the same values whatever the world size).

Gradient clipping is sharded: the norm is summed from each rank's shards and all-reduced once
(`clip_grad_norm`). Parameters FSDP cannot shard (0-d scalars such as the heads' `log_scale`) stay replicated
on every rank and their gradients are averaged here (`average_replicated_grads`). A rank whose batch leaves a
parameter unused still takes part in every reduction with a zero gradient.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from rsneo.errors import InputError
from rsneo.model.backbone import NativeLayer
from rsneo.model.causal_lm import init_module
from rsneo.model.checkpoint import read_rows


def build_strategy(trainer_cfg: dict[str, Any]) -> Any:
    """A Lightning strategy object (or name) for `trainer.strategy`: auto, ddp, fsdp."""
    name = trainer_cfg["strategy"]
    cpu = trainer_cfg["accelerator"] == "cpu"
    if name == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(process_group_backend="gloo" if cpu else "nccl", find_unused_parameters=False)
    if name == "fsdp":
        options = fsdp_options(trainer_cfg["fsdp"])
        return sharded_data_parallel()(
            process_group_backend="gloo" if cpu else None,
            save_distributed_checkpoint=options["sharded_checkpoints"],
        )
    return name


SHARDING = {"FULL_SHARD": True, "SHARD_GRAD_OP": False}  # free a layer's gathered weights after forward?
CHECKPOINTS = {"sharded": True, "full": False}


def fsdp_options(fsdp: dict[str, Any]) -> dict[str, bool]:
    """`trainer.fsdp` in FSDP2's terms. `sharding_strategy`: FULL_SHARD frees each layer's gathered weights
    after its forward (gathered again for the backward), SHARD_GRAD_OP keeps them until the backward (more
    memory, less communication); `state_dict_type`: sharded (each rank writes its shards to a checkpoint
    folder) or full (gathered on rank 0 into one file); `cpu_offload`: shards, gradients and optimizer steps
    on the host."""
    strategy, checkpoints = str(fsdp["sharding_strategy"]), str(fsdp["state_dict_type"])
    if strategy not in SHARDING or checkpoints not in CHECKPOINTS:
        raise InputError(
            f"trainer.fsdp: sharding_strategy must be one of {list(SHARDING)} and state_dict_type one of "
            f"{list(CHECKPOINTS)}, got {strategy!r} and {checkpoints!r}"
        )
    return {
        "reshard_after_forward": SHARDING[strategy],
        "sharded_checkpoints": CHECKPOINTS[checkpoints],
        "cpu_offload": bool(fsdp["cpu_offload"]),
    }


def sharded_data_parallel() -> type:
    """Lightning's `ModelParallelStrategy` with every device a data-parallel rank (no tensor parallelism):
    FSDP2 over all of them (gloo on CPUs, NCCL on GPUs)."""
    from lightning.pytorch.strategies import ModelParallelStrategy

    class ShardedDataParallel(ModelParallelStrategy):
        def setup_environment(self) -> None:
            self._data_parallel_size = self.num_nodes * self.num_processes
            self._tensor_parallel_size = 1
            super().setup_environment()

    return ShardedDataParallel


def is_sharded(module: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def fsdp_builds_on_meta(trainer_cfg: dict[str, Any]) -> bool:
    """Under FSDP the model is built on the meta device (shapes only) and each rank fills its own shard."""
    return trainer_cfg["strategy"] == "fsdp"


@contextmanager
def meta_model(enabled: bool = True) -> Iterator[None]:
    """Build modules on the meta device (shapes and dtypes only) when `enabled`."""
    if not enabled:
        yield
        return
    with torch.device("meta"):
        yield


# ---- sharding ---------------------------------------------------------------------------------------------
def shard_training_module(
    module: nn.Module,
    mesh: Any,
    device: torch.device,
    forward: str,
    init_from: str | None = None,
    reshard_after_forward: bool = True,
    cpu_offload: bool = False,
) -> None:
    """FSDP2 over `module` (an `RSNeoTraining`, whose `.model` may be on meta): one unit per decoder layer,
    the module itself the root (`forward`, the method that runs the model, is registered as its forward),
    then each rank's shard filled (`fill_shards`). The last two options: `fsdp_options`."""
    from torch.distributed.fsdp import (
        CPUOffloadPolicy,
        OffloadPolicy,
        fully_shard,
        register_fsdp_forward_method,
    )

    shard = partial(
        fully_shard, mesh=mesh, reshard_after_forward=reshard_after_forward,
        offload_policy=CPUOffloadPolicy() if cpu_offload else OffloadPolicy(),
    )  # fmt: skip

    replica = copy.deepcopy(module.model) if _has_meta(module.model) and not init_from else None
    kept = {n: p.detach().clone() for n, p in module.named_parameters() if not p.is_meta}
    buffers = {n: b.clone() for n, b in module.named_buffers() if not b.is_meta}
    for layer in module.model.backbone.layers:
        shard(layer)
    scalars = {p for p in module.parameters() if p.ndim == 0}  # FSDP shards along a dimension: none here
    shard(module, ignored_params=scalars)
    register_fsdp_forward_method(module, forward)
    module.set_reduce_scatter_unused_params(True)  # a parameter unused on one rank: a zero gradient
    module.to_empty(device=device)  # storage for each rank's shard only
    with torch.no_grad():
        for name, buffer in module.named_buffers():
            buffer.copy_(buffers[name])
    fill_shards(module, kept, replica, init_from)


def _has_meta(module: nn.Module) -> bool:
    return any(p.is_meta for p in module.parameters())


def local_rows(param: Tensor) -> tuple[int, int]:
    """Rows [start, stop) of the full tensor that this rank's shard of `param` holds (dim 0 is sharded)."""
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    if not isinstance(param, DTensor) or param.ndim == 0:
        return 0, param.shape[0] if param.ndim else 1
    shape, offset = compute_local_shape_and_global_offset(param.shape, param.device_mesh, param.placements)
    return offset[0], offset[0] + shape[0]


def _local(param: Tensor) -> Tensor:
    return param.to_local() if hasattr(param, "to_local") else param


def _write_rows(param: Tensor, full: Tensor) -> None:
    """This rank's rows of the full value `full` into its shard of `param` (a 0-d value whole)."""
    start, stop = local_rows(param)
    _local(param).copy_(full[start:stop] if full.ndim else full)


@torch.no_grad()
def fill_shards(
    module: nn.Module, kept: dict[str, Tensor], replica: nn.Module | None, init_from: str | None
) -> None:
    """Write each rank's rows of every parameter: the parameters that were real before sharding (the heads)
    from `kept`; the model's from the `init_from` folder (only this rank's rows of each tensor are read) or
    from `replica`, a meta copy of the model materialised and initialised one unit at a time."""
    params = dict(module.named_parameters())
    todo = {n: p for n, p in params.items() if n not in kept}
    for name, full in kept.items():
        _write_rows(params[name], full)
    if init_from:
        wanted = {n.removeprefix("model."): local_rows(p) for n, p in todo.items()}
        for name, rows in read_rows(Path(init_from), wanted):
            _local(params[f"model.{name}"]).copy_(rows)
        return
    assert replica is not None
    for unit_name, unit, excluded in _units(replica):
        for name, full in _initialised(replica, unit_name, unit, excluded).items():
            _write_rows(params[f"model.{name}"], full)
        if unit is not replica:
            unit.to("meta")  # the unit's full values are not needed any more: one unit in memory at a time


def _units(replica: nn.Module) -> Iterator[tuple[str, nn.Module, str | None]]:
    """The FSDP units of the model: each decoder layer, then the rest (the root's own parameters: the layers
    excluded), as (name prefix, module, excluded prefix)."""
    for i, layer in enumerate(replica.backbone.layers):
        yield f"backbone.layers.{i}", layer, None
    yield "", replica, "backbone.layers."


def _initialised(replica: nn.Module, prefix: str, unit: nn.Module, excluded: str | None) -> dict[str, Tensor]:
    """Full values of a unit's meta parameters (outside `excluded`, another unit's): storage for them (on the
    CPU), then the model's own initialisation (`reset_parameters`, children first, then `init_module`). Tied
    parameters stay tied."""
    touched: list[tuple[str, nn.Module]] = []
    fresh: dict[int, nn.Parameter] = {}
    for name, sub in unit.named_modules(prefix=prefix):
        if excluded and name.startswith(excluded):
            continue
        meta = False
        for key, param in list(sub._parameters.items()):
            if param is not None and param.is_meta:
                if id(param) not in fresh:
                    fresh[id(param)] = nn.Parameter(
                        torch.empty_like(param, device="cpu"), param.requires_grad
                    )
                sub._parameters[key] = fresh[id(param)]
                meta = True
        if meta:
            touched.append((name, sub))
    for _, sub in reversed(touched):
        if callable(getattr(sub, "reset_parameters", None)):
            sub.reset_parameters()
    for name, sub in touched:
        init_module(replica.config, name, sub)
    values: dict[str, Tensor] = {}
    seen: set[int] = set()
    for name, sub in touched:
        for key, p in sub._parameters.items():
            if p is not None and id(p) not in seen:  # a tied parameter under its first name only
                seen.add(id(p))
                values[f"{name}.{key}".lstrip(".")] = p.detach()
    return values


# ---- gradients -------------------------------------------------------------------------------------------
def average_replicated_grads(params: Iterable[Tensor]) -> None:
    """All-reduce (mean) the gradients of parameters FSDP keeps whole on every rank (`ignored_params`); a rank
    that did not use one contributes zeros. One flat all-reduce for all of them."""
    from torch.distributed.tensor import DTensor

    plain = [p for p in params if p.requires_grad and not isinstance(p, DTensor)]
    if not plain or not dist.is_initialized():
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in plain]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for p, chunk in zip(plain, flat.split([g.numel() for g in grads]), strict=True):
        p.grad = chunk.view_as(p).clone()


def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> Tensor:
    """Clip the global gradient norm of sharded (DTensor) and replicated parameters to `max_norm`.

    The squared norms of each rank's shards are summed by one all-reduce (DTensor's `full_tensor`), the
    replicated gradients (equal on every rank) added once; every gradient is then scaled by
    min(1, max_norm / (norm + 1e-6)), as `torch.nn.utils.clip_grad_norm_` does, without reading the norm back
    to the host. Returns the norm before clipping.
    """
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    sharded = [g for g in grads if isinstance(g, DTensor)]
    plain = [g for g in grads if not isinstance(g, DTensor)]
    total = torch.zeros((), dtype=torch.float32, device=grads[0].device if grads else "cpu")
    if sharded:
        norm = torch.nn.utils.get_total_norm(sharded, 2.0)
        total = total + (norm.full_tensor() if isinstance(norm, DTensor) else norm).float() ** 2
    if plain:
        total = total + torch.nn.utils.get_total_norm(plain, 2.0).float().to(total.device) ** 2
    total = total.sqrt()
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.to(g.dtype))
    return total


# ---- per-layer options -------------------------------------------------------------------------------------
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
