"""Multi-Head Native Attention: NEO's T/H/W axes, and the spectral axis S as a learned phase.

Per head, the query and key are the concatenation [T | H | W] (2 x head_dim, NEO's layout):
- T (head_dim): Qwen3's q_proj/k_proj, q_norm/k_norm, rotary at the T index with the LLM's base;
- H, W (head_dim/2 each): halves of q_proj_hw/k_proj_hw, own QK-norms, rotary at the H or W index, base
  rope_theta_hw.
Values stay head_dim and the scale stays 1/sqrt(head_dim), so with k_proj_hw at zero the layer is the plain
Qwen3 layer.

S, the band group's spectral coordinate, takes no channels of its own: it turns rotary pairs of [T | H | W]
further by S x `spectral_frequencies[i]` (`RSNeoConfig.spectral_pairs` says which pairs; one learned frequency
per pair and layer, shared by all heads so that a query and a key are turned alike and only S - S' counts).
The frequencies start at zero: then every angle is exactly NEO's (`NativeRopeTables.with_phase`), so a model
initialised from NEO or Qwen3 computes exactly what they compute, and the gradient on a frequency is the
(S - S')-weighted sine term of its pairs, so the axis opens smoothly (a step of size e moves a score by about
e x S). q/k stay 2 x head_dim wide (256 at NEO sizes), which flash kernels take.

Kernels: dense-mask SDPA (CPU: its fused flash kernel, values zero-padded to the q/k width once per forward in
inference, since that kernel takes one head width; CUDA: the values unpadded), compiled FlexAttention
(`rsneo.model.flex`), variable-length flash (`rsneo.model.varlen`). Key/value heads are shared by groups of
query heads inside each kernel (grouped-query attention), never repeated in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend

from rsneo.model.config import RSNeoConfig
from rsneo.model.flex import FlexOptions, flex_attention
from rsneo.model.kv_cache import KVCache
from rsneo.model.masks import FlashPlan
from rsneo.model.rope import NativeRopeTables, apply_rotary, phase_pairs
from rsneo.model.varlen import run_varlen


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
    block_mask: Any = None  # FlexAttention BlockMask, padded to its bucket
    flash: FlashPlan | None = None
    kernel: str = ""  # what runs: "sdpa", "flex compiled" / "flex uncompiled", or a `varlen.KERNELS` name
    flex: FlexOptions = field(default_factory=FlexOptions)
    # (batch, tokens, kv heads, q/k width) zeros: each layer writes its values into the first head_dim
    # channels, so the CPU's fused kernel gets them padded without a new padded copy per layer (no grad only)
    padded_values: Tensor | None = None


def _grouped_kv(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float
) -> tuple[Tensor, Tensor, bool]:
    """Keys/values for SDPA with grouped-query heads: shared natively (`enable_gqa`) where the fused kernel
    SDPA picks takes them (the CPU's flash kernel does), repeated per query head only where it would otherwise
    fall back to the math kernel."""
    if k.shape[1] == q.shape[1]:
        return k, v, False
    if not q.is_cuda:
        return k, v, True
    choice = torch._fused_sdp_choice(q, k, v, mask, 0.0, False, scale=scale, enable_gqa=True)
    if choice != SDPBackend.MATH.value:
        return k, v, True
    group = q.shape[1] // k.shape[1]
    return k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1), False


def _padded_for_cpu(q: Tensor, v: Tensor) -> Tensor:
    """Values zero-padded to the q/k width where the CPU's fused kernel may run (it takes one head width);
    as they are on CUDA, or when the fused kernel is switched off (`sdpa_kernel`)."""
    if q.is_cuda or v.shape[-1] >= q.shape[-1] or not torch.backends.cuda.flash_sdp_enabled():
        return v
    return F.pad(v, (0, q.shape[-1] - v.shape[-1]))


def sdpa_kernel_name(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> str:
    """Which of SDPA's kernels `sdpa` runs for these inputs ("sdpa flash", "sdpa efficient", "sdpa math",
    ...): SDPA's own choice, as it makes it (for benchmarks that label each row by the kernel that ran)."""
    v = _padded_for_cpu(q, v)
    k, v, gqa = _grouped_kv(q, k, v, mask, scale)
    choice = torch._fused_sdp_choice(q, k, v, mask, 0.0, False, scale=scale, enable_gqa=gqa)
    return "sdpa " + SDPBackend(choice).name.lower().removesuffix("_attention")


def sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """SDPA on q (batch, heads, tokens, qk) and k, v with the key/value heads; v may be narrower than q/k.

    On the CPU the fused (flash) kernel needs one head width for q, k and v: narrower values are zero-padded
    here (the padded channels multiply zero weights, the output is cut back), unless the caller passed them
    padded already (`AttentionMask.padded_values`). Unpadded, SDPA would fall back to the math kernel, which
    stores every head's full score matrix (about 4x slower, `benchmarks/attention.py --values`). On CUDA the
    memory-efficient kernel takes values of their own width, so nothing is padded there.
    """
    dv = v.shape[-1]
    v = _padded_for_cpu(q, v)
    k, v, gqa = _grouped_kv(q, k, v, mask, scale)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)
    return out[..., :dv] if out.shape[-1] != dv else out


class NativeAttention(nn.Module):
    def __init__(self, config: RSNeoConfig) -> None:
        super().__init__()
        d, hd = config.hidden_size, config.head_dim
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
        pairs = phase_pairs(hd, config.spectral_pairs) if config.spectral_layout == "phase" else 0
        # radians per unit of S, one per rotary pair that carries the phase; zero: S changes nothing
        self.spectral_frequencies = nn.Parameter(torch.zeros(pairs)) if pairs else None

    def reset_parameters(self) -> None:
        """The spectral frequencies start at zero (used when materialising a model built on meta)."""
        if self.spectral_frequencies is not None:
            nn.init.zeros_(self.spectral_frequencies)

    def _project(
        self,
        x: Tensor,
        tables: tuple[tuple[Tensor, Tensor], ...],
        rope: NativeRopeTables,
        heads: int,
        proj: str,
    ) -> Tensor:
        """x (batch, tokens, hidden) -> rotated [T | H | W] (batch, heads, tokens, qk_dim), `proj` q/k."""
        batch, length, _ = x.shape
        hd = self.config.head_dim
        t_table, h_table, w_table = tables

        def split(y: Tensor) -> Tensor:
            return y.view(batch, length, heads, -1).transpose(1, 2)

        norm = lambda name: getattr(self, f"{proj}_norm{name}")
        t = apply_rotary(norm("")(split(getattr(self, f"{proj}_proj")(x))), *t_table)
        hw = split(getattr(self, f"{proj}_proj_hw")(x))
        h = apply_rotary(norm("_h")(hw[..., : hd // 2]), *h_table)
        w = apply_rotary(norm("_w")(hw[..., hd // 2 :]), *w_table)
        return torch.cat([t, h, w], dim=-1)

    def forward(
        self,
        x: Tensor,
        rope: NativeRopeTables,
        mask: AttentionMask,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (batch, tokens, hidden) -> (batch, tokens, hidden), and the keys/values attended over.

        With `cache`, this call's keys/values are written into layer `layer`'s buffers after the cached ones.
        """
        cfg = self.config
        batch, length, _ = x.shape
        tables = rope.with_phase(self.spectral_frequencies)  # this layer's spectral phase on the rotary
        q = self._project(x, tables, rope, cfg.num_heads, "q")  # (batch, heads, tokens, qk_dim)
        k = self._project(x, tables, rope, cfg.num_kv_heads, "k")  # (batch, kv heads, tokens, qk_dim)
        v = self.v_proj(x).view(batch, length, cfg.num_kv_heads, cfg.head_dim)
        if cache is not None:
            k, v = cache.update(layer, k, v.transpose(1, 2))
        else:
            v = self._values(v, mask)
        present = (k, v[..., : cfg.head_dim])
        scale = 1.0 / math.sqrt(cfg.head_dim)
        # under autocast the projections are in the autocast dtype but the (fp32) rotary promotes q/k back
        q, k = q.to(v.dtype), k.to(v.dtype)
        if mask.backend == "flex":
            out = flex_attention(q, k, v, mask.block_mask, scale, mask.flex)
        elif mask.backend == "flash":
            out = run_varlen(mask.flash, q, k, v, scale, mask.kernel or None)
        else:
            out = sdpa(q, k, v, mask.dense, scale)
        out = out[..., : cfg.head_dim].transpose(1, 2).reshape(batch, length, cfg.num_heads * cfg.head_dim)
        return self.o_proj(out), present

    @staticmethod
    def _values(v: Tensor, mask: AttentionMask) -> Tensor:
        """(batch, tokens, kv heads, head_dim) -> (batch, kv heads, tokens, width): in the per-forward padded
        buffer when the mask carries one (written in place: inference only), else as they are."""
        buffer = mask.padded_values
        if buffer is None or buffer.shape[:3] != v.shape[:3] or buffer.dtype != v.dtype:
            return v.transpose(1, 2)
        buffer[..., : v.shape[-1]].copy_(v)
        return buffer.transpose(1, 2)
