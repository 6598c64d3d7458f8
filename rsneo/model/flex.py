"""FlexAttention that stays compiled: every batch is padded to a bucket of a fixed ladder of shapes.

Compiled Flex (`torch.compile(flex_attention, dynamic=False)`) specialises on its input shapes, and torch
keeps at most `recompile_limit` (8) variants of a function: past that it runs Flex uncompiled, which stores
the full fp32 score matrix of every head (about 64 GiB at 32k tokens), and only logs it. A training run's
batches vary in rows (the objectives' parts are stacked) and in width (the widest row), so a run meets many
shapes.

Here each batch is padded, in rows and in tokens per row, up to the next step of a ladder (`FlexBuckets`,
powers of two by default): padding tokens (doc id -1) attend only themselves, so Flex skips all but the
diagonal blocks of the padding and the extra compute is small. The shapes a process can meet are then at most
the ladder's (lengths x rows) per grad mode, the compiled call runs with torch's recompile limit raised to
that bound, and `fail_on_recompile_limit_hit` turns any variant past it into an error: Flex on CUDA either
runs compiled or stops with a message, never uncompiled in silence. A batch beyond the ladder's top is refused
with the ladder named (`InputError`).

On the CPU Flex runs uncompiled (a reference for the tests; no C++ toolchain needed), and torch's warning
about that is left to show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rsneo.errors import InputError

FLEX_BLOCK = 128  # FlexAttention's tile: BlockMasks and its kernels work on 128 x 128 blocks
GRAD_MODES = 2  # a shape compiles once with gradients (training) and once without (validation, inference)


def _powers_of_two(first: int, last: int) -> tuple[int, ...]:
    return tuple(1 << i for i in range(first.bit_length() - 1, last.bit_length()))


@dataclass(frozen=True)
class FlexBuckets:
    """The ladder of padded shapes: tokens per row (`lengths`, multiples of 128) and rows per batch."""

    lengths: tuple[int, ...] = _powers_of_two(FLEX_BLOCK, 65536)
    rows: tuple[int, ...] = _powers_of_two(1, 256)

    def __post_init__(self) -> None:
        for name, steps in (("lengths", self.lengths), ("rows", self.rows)):
            steps = tuple(int(s) for s in steps)
            object.__setattr__(self, name, steps)
            if not steps or any(s <= 0 for s in steps) or list(steps) != sorted(set(steps)):
                raise InputError(
                    f"flex buckets: {name} must be positive and strictly increasing, got {steps}"
                )
        odd = [n for n in self.lengths if n % FLEX_BLOCK]
        if odd:
            raise InputError(f"flex buckets: lengths must be multiples of {FLEX_BLOCK} tokens, got {odd}")

    @property
    def size(self) -> int:
        """How many padded shapes the ladder holds."""
        return len(self.lengths) * len(self.rows)

    def check_holds(self, max_tokens: int) -> None:
        """Refuse a ladder whose longest bucket is shorter than the rows a run may pack."""
        if max_tokens > self.lengths[-1]:
            raise InputError(
                f"flex buckets: the longest bucket holds {self.lengths[-1]} tokens per row, but max_tokens "
                f"is {max_tokens}; add a bucket of at least {max_tokens} tokens (a multiple of {FLEX_BLOCK}) "
                "or lower max_tokens"
            )

    def shape(self, rows: int, length: int) -> tuple[int, int]:
        """The bucket (rows, tokens per row) a batch of `rows` x `length` tokens is padded to."""
        padded_rows = next((r for r in self.rows if r >= rows), None)
        padded_length = next((n for n in self.lengths if n >= length), None)
        if padded_rows is None or padded_length is None:
            raise InputError(
                f"FlexAttention: a batch of {rows} rows x {length} tokens is beyond the bucket ladder "
                f"(at most {self.rows[-1]} rows x {self.lengths[-1]} tokens); pack fewer or shorter rows, or "
                "extend the ladder (model.flex_lengths / model.flex_rows)"
            )
        return padded_rows, padded_length


@dataclass
class FlexOptions:
    """How this process runs Flex: the ladder, and whether and with what it compiles.

    `compile` None: compiled on CUDA, uncompiled elsewhere. Tests compile on the CPU with a dynamo backend
    that needs no toolchain (`torch._dynamo.testing.CompileCounter`).
    """

    buckets: FlexBuckets = field(default_factory=FlexBuckets)
    compile: bool | None = None
    backend: Any = "inductor"

    def compiled(self, device: torch.device) -> bool:
        return device.type == "cuda" if self.compile is None else self.compile


_compiled_kernels: dict[Any, Any] = {}


def flex_kernel(compiled: bool, backend: Any = "inductor") -> Any:
    """FlexAttention, compiled once per dynamo backend with static shapes (the buckets bound them)."""
    from torch.nn.attention.flex_attention import flex_attention as flex

    if not compiled:
        return flex
    if backend not in _compiled_kernels:
        _compiled_kernels[backend] = torch.compile(flex, dynamic=False, backend=backend)
    return _compiled_kernels[backend]


def flex_needs_power_of_two() -> bool:
    """Older FlexAttention (torch < 2.8 or so) rejects head dims that are not powers of two."""
    from torch.nn.attention import flex_attention as module

    return hasattr(module, "_supported_head_dim")


def _pad_last(x: Tensor, width: int) -> Tensor:
    return F.pad(x, (0, width - x.shape[-1])) if width > x.shape[-1] else x


def pad_to_mask(x: Tensor, rows: int, length: int) -> Tensor:
    """x (batch, heads, tokens, dim) zero-padded to `rows` x `length` (the block mask's bucket), contiguous
    either way: compiled Flex guards on strides too, and a transposed view would be one more variant."""
    extra_rows, extra_tokens = rows - x.shape[0], length - x.shape[2]
    if extra_rows or extra_tokens:
        return F.pad(x, (0, 0, 0, extra_tokens, 0, 0, 0, extra_rows))
    return x.contiguous()


def flex_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    block_mask: Any,
    scale: float,
    options: FlexOptions | None = None,
    buckets_size: int | None = None,
) -> Tensor:
    """Flex on q (batch, heads, tokens, dim) and k/v with the model's key/value heads (grouped-query).

    The block mask covers the batch padded to its bucket (`flex_block_mask`); q, k, v are zero-padded to it
    here and the output is cut back. Where the installed version needs power-of-two head dims, q/k and v are
    zero-padded too (scores and outputs are unchanged: the extra channels multiply zeros).
    """
    options = options or FlexOptions()
    batch, _, length, _ = q.shape
    dv = v.shape[-1]
    rows, padded = block_mask.shape[0], block_mask.seq_lengths[0]
    q, k, v = (pad_to_mask(t, rows, padded) for t in (q, k, v))
    if flex_needs_power_of_two():
        q, k = (_pad_last(t, max(16, 1 << (q.shape[-1] - 1).bit_length())) for t in (q, k))
        v = _pad_last(v, max(16, 1 << (dv - 1).bit_length()))
    gqa = k.shape[1] != q.shape[1]
    # inside a compiled layer (`model.compile`) Flex is traced with the layer, not compiled on its own
    compiled = options.compiled(q.device) and not torch.compiler.is_compiling()
    kernel = flex_kernel(compiled, options.backend)
    if not compiled:
        out = kernel(q, k, v, block_mask=block_mask, scale=scale, enable_gqa=gqa)
        return out[:batch, :, :length, :dv]
    limit = GRAD_MODES * (buckets_size or options.buckets.size)
    try:
        with torch._dynamo.config.patch(
            recompile_limit=max(limit, torch._dynamo.config.recompile_limit), fail_on_recompile_limit_hit=True
        ):
            out = kernel(q, k, v, block_mask=block_mask, scale=scale, enable_gqa=gqa)
    except torch._dynamo.exc.FailOnRecompileLimitHit as exc:
        raise RuntimeError(
            f"FlexAttention: this process compiled Flex for more shapes than the bucket ladder holds "
            f"({limit}); the next would run uncompiled (the full score matrix in memory), so rsneo stops "
            "here. Something besides the bucketed shapes changes between calls (dtype, head count, scale, "
            "another model in the same process)."
        ) from exc
    return out[:batch, :, :length, :dv]
