"""Multi-Head Native Attention with a fourth (spectral) axis.

Per head, the query and key are the concatenation [T | H | W | S]:
- T (head_dim): Qwen3's q_proj/k_proj, q_norm/k_norm, rotary at the T index with the LLM's base;
- H, W (head_dim/2 each): halves of q_proj_hw/k_proj_hw, own QK-norms, rotary at the H or W index, base
rope_theta_hw;
- S (spectral_head_dim): q_proj_s/k_proj_s, own QK-norms, rotary at the spectral coordinate, base
rope_theta_s.
Values stay head_dim and the scale stays 1/sqrt(head_dim), so with k_proj_hw at zero and the S gate shut the
layer is the plain Qwen3 layer (the H/W/S terms of every score are exactly 0).

The S gate is `k_norm_s.weight`, which starts at zero while `k_proj_s` starts non-zero: the S term is
exactly 0 at initialisation, and a small step on the gate changes it by about the step size. (A zero
`k_proj_s` under a unit-weight RMSNorm would be exact too, but its first update is normalised to full size:
the S axis would jump.) Older folders stored `k_norm_s` at one with `k_proj_s` at zero; they load and behave
as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsneo.model.config import RSNeoConfig
from rsneo.model.masks import FlashPlan, run_varlen
from rsneo.model.rope import NativeRopeTables, apply_rotary


class RMSNorm(nn.Module):
    """Qwen3's RMSNorm: normalise in fp32, scale in the input dtype."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def reset_parameters(self) -> None:  # used when materialising a model built on the meta device
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


@dataclass
class AttentionMask:
    """What one backend needs, built once per forward and shared by every layer."""

    backend: str  # "sdpa", "flex" or "flash"
    dense: Tensor | None = None  # (batch, 1, queries, keys) bool
    block_mask: Any = None  # FlexAttention BlockMask
    flash: FlashPlan | None = None


_compiled_flex: dict[Any, Any] = {}


def flex_needs_power_of_two() -> bool:
    """Older FlexAttention (torch < 2.8 or so) rejects head dims that are not powers of two."""
    from torch.nn.attention import flex_attention as module

    return hasattr(module, "_supported_head_dim")


def _pad_last(x: Tensor, width: int) -> Tensor:
    return F.pad(x, (0, width - x.shape[-1])) if width > x.shape[-1] else x


def flex_kernel(compiled: bool, backend: Any = "inductor") -> Any:
    """FlexAttention, compiled once per backend with static shapes (lengths come padded to `FLEX_BLOCK`)."""
    from torch.nn.attention.flex_attention import flex_attention as flex

    if not compiled:
        return flex
    if backend not in _compiled_flex:
        _compiled_flex[backend] = torch.compile(flex, dynamic=False, backend=backend)
    return _compiled_flex[backend]


def flex_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    block_mask: Any,
    scale: float,
    pad: bool | None = None,
    compiled: bool | None = None,
    backend: Any = "inductor",
) -> Tensor:
    """FlexAttention, compiled on CUDA (fused kernel), eager elsewhere (unless `compiled`).

    The block mask covers the row padded to a multiple of `FLEX_BLOCK` (see `flex_block_mask`); q, k, v are
    zero-padded to that length here and the output is cut back, so the compiled kernel sees one length per
    128-token bucket instead of recompiling for every packed length. Where the installed version needs
    power-of-two head dims, q/k and v are zero-padded too (scores and outputs are unchanged: the extra
    channels multiply zeros).
    """
    length, dv = q.shape[-2], v.shape[-1]
    padded = block_mask.seq_lengths[0]
    if padded > length:
        q, k, v = (F.pad(t, (0, 0, 0, padded - length)) for t in (q, k, v))
    if pad if pad is not None else flex_needs_power_of_two():
        q, k = (_pad_last(t, max(16, 1 << (q.shape[-1] - 1).bit_length())) for t in (q, k))
        v = _pad_last(v, max(16, 1 << (dv - 1).bit_length()))
    kernel = flex_kernel(q.is_cuda if compiled is None else compiled, backend)
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
        return kernel(q, k, v, block_mask=block_mask, scale=scale)[..., :length, :dv]


def sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """SDPA with values zero-padded to the q/k width, cut back after.

    Fused kernels (flash on CPU and CUDA) need one head width for q, k and v; rsneo's values are head_dim
    wide and its q/k 2 x head_dim + S. Unpadded, SDPA falls back to the math kernel, which stores every
    head's full score matrix. The padded channels multiply zero weights, so the output is unchanged.
    """
    dv = v.shape[-1]
    v = _pad_last(v, q.shape[-1])
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return out[..., :dv]


class NativeAttention(nn.Module):
    def __init__(self, config: RSNeoConfig) -> None:
        super().__init__()
        d, hd, sd = config.hidden_size, config.head_dim, config.spectral_head_dim
        h, kv = config.num_heads, config.num_kv_heads
        self.config = config
        self.q_proj = nn.Linear(d, h * hd, bias=False)
        self.k_proj = nn.Linear(d, kv * hd, bias=False)
        self.v_proj = nn.Linear(d, kv * hd, bias=False)
        self.o_proj = nn.Linear(h * hd, d, bias=False)
        self.q_proj_hw = nn.Linear(d, h * hd, bias=False)
        self.k_proj_hw = nn.Linear(d, kv * hd, bias=False)
        eps = config.rms_norm_eps
        self.q_norm, self.k_norm = RMSNorm(hd, eps), RMSNorm(hd, eps)
        self.q_norm_h, self.q_norm_w = RMSNorm(hd // 2, eps), RMSNorm(hd // 2, eps)
        self.k_norm_h, self.k_norm_w = RMSNorm(hd // 2, eps), RMSNorm(hd // 2, eps)
        if sd:
            self.q_proj_s = nn.Linear(d, h * sd, bias=False)
            self.k_proj_s = nn.Linear(d, kv * sd, bias=False)
            self.q_norm_s, self.k_norm_s = RMSNorm(sd, eps), RMSNorm(sd, eps)

    def _project(self, x: Tensor, rope: NativeRopeTables, heads: int, proj: str) -> Tensor:
        """x (batch, tokens, hidden) -> rotated [T | H | W | S] (batch, heads, tokens, qk_dim)."""
        batch, length, _ = x.shape
        hd = self.config.head_dim

        def split(t: Tensor) -> Tensor:
            return t.view(batch, length, heads, -1).transpose(1, 2)

        norm = lambda name: getattr(self, f"{proj}_norm{name}")
        t = apply_rotary(norm("")(split(getattr(self, f"{proj}_proj")(x))), *rope.t)
        hw = split(getattr(self, f"{proj}_proj_hw")(x))
        h = apply_rotary(norm("_h")(hw[..., : hd // 2]), *rope.h)
        w = apply_rotary(norm("_w")(hw[..., hd // 2 :]), *rope.w)
        parts = [t, h, w]
        if self.config.spectral_head_dim:
            parts.append(apply_rotary(norm("_s")(split(getattr(self, f"{proj}_proj_s")(x))), *rope.s))
        return torch.cat(parts, dim=-1)

    def forward(
        self,
        x: Tensor,
        rope: NativeRopeTables,
        mask: AttentionMask,
        cache: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (batch, tokens, hidden) -> (batch, tokens, hidden), and this layer's keys/values (KV cache)."""
        cfg = self.config
        batch, length, _ = x.shape
        q = self._project(x, rope, cfg.num_heads, "q")  # (batch, heads, tokens, qk_dim)
        k = self._project(x, rope, cfg.num_kv_heads, "k")  # (batch, kv heads, tokens, qk_dim)
        v = self.v_proj(x).view(batch, length, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)
        if cache is not None:
            k, v = torch.cat((cache[0], k), dim=2), torch.cat((cache[1], v), dim=2)
        present = (k, v)
        repeat = cfg.num_heads // cfg.num_kv_heads
        k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        scale = 1.0 / math.sqrt(cfg.head_dim)
        # under autocast the projections are in the autocast dtype but the (fp32) rotary promotes q/k back
        q, k = q.to(v.dtype), k.to(v.dtype)
        if mask.backend == "flex":
            out = flex_attention(q, k, v, mask.block_mask, scale)
        elif mask.backend == "flash":
            out = run_varlen(mask.flash, q, k, v, scale)
        else:
            out = sdpa(q, k, v, mask.dense, scale)
        out = out.transpose(1, 2).reshape(batch, length, cfg.num_heads * cfg.head_dim)
        return self.o_proj(out), present
