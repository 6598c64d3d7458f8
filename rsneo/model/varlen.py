"""Variable-length flash attention on a `FlashPlan`: flash-attn, torch's varlen kernel, or SDPA per segment.

A document-blocked batch (all text, or every document one bidirectional image block; `masks.flash_plan`) is
gathered into one packed sequence of its valid tokens with cumulative segment offsets, attended per segment
and scattered back. Which kernel runs (`varlen_kernel`):
- `flash-attn`: `flash_attn_varlen_func` of the flash-attn package, on CUDA when it is installed;
- `torch varlen`: `torch.nn.attention.varlen.varlen_attn` (torch >= 2.10; a flash kernel inside torch), on
  CUDA in fp16/bf16 otherwise;
- `sdpa per segment`: SDPA over each segment in turn, anywhere else (the CPU reference the tests check the
  plans with).
Both flash kernels take key/value heads shared by groups of query heads directly (no repeat), and need one
head width for q, k and v: the values (head_dim) are zero-padded to the query/key width (2 x head_dim, at most
256), which leaves the output unchanged.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F
from torch import Tensor

from rsneo.model.masks import FLASH_MAX_HEAD_DIM, FlashPlan

KERNELS = ("flash-attn", "torch varlen", "sdpa per segment")


def flash_attn_installed() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def torch_varlen_available() -> bool:
    return importlib.util.find_spec("torch.nn.attention.varlen") is not None


def varlen_kernel(device: torch.device, dtype: torch.dtype, qk_dim: int) -> str:
    """The kernel `run_varlen` uses for tensors of this device, dtype and query/key head width."""
    flash_ready = (
        device.type == "cuda" and dtype in (torch.float16, torch.bfloat16) and qk_dim <= FLASH_MAX_HEAD_DIM
    )
    if flash_ready and flash_attn_installed():
        return "flash-attn"
    if flash_ready and torch_varlen_available():
        return "torch varlen"
    return "sdpa per segment"


def run_varlen(
    plan: FlashPlan, q: Tensor, k: Tensor, v: Tensor, scale: float, kernel: str | None = None
) -> Tensor:
    """Attention per segment of `plan`. q (batch, heads, tokens, dim); k, v (batch, kv heads, tokens, dim).

    Padding tokens come back as zeros. `kernel` None: `varlen_kernel` decides.
    """
    batch, heads, length, _ = q.shape
    dv = v.shape[-1]
    kernel = kernel or varlen_kernel(q.device, q.dtype, q.shape[-1])

    def flat(x: Tensor) -> Tensor:  # (batch, h, tokens, d) -> (valid tokens, h, d)
        return x.transpose(1, 2).reshape(batch * length, x.shape[1], x.shape[-1])[plan.token_index]

    fq, fk = flat(q), flat(k)
    # every kernel here takes one head width for q, k and v (SDPA's CPU flash kernel too): pad the values
    fv = F.pad(flat(v), (0, fq.shape[-1] - dv))
    if kernel == "sdpa per segment":
        out = _segments(plan, fq, fk, fv, scale)
    else:
        cu, longest = plan.cu_seqlens, plan.max_seqlen
        if kernel == "flash-attn":
            from flash_attn import flash_attn_varlen_func

            out = flash_attn_varlen_func(
                fq, fk, fv, cu, cu, longest, longest, softmax_scale=scale, causal=plan.causal
            )
        else:
            from torch.nn.attention.varlen import varlen_attn

            window = (-1, 0) if plan.causal else (-1, -1)
            out = varlen_attn(
                fq, fk, fv, cu, cu, longest, longest, scale=scale, window_size=window,
                enable_gqa=fk.shape[1] != fq.shape[1],
            )  # fmt: skip
    full = out.new_zeros(batch * length, heads, dv)
    full[plan.token_index] = out[..., :dv]
    return full.view(batch, length, heads, dv).transpose(1, 2)


def _segments(plan: FlashPlan, fq: Tensor, fk: Tensor, fv: Tensor, scale: float) -> Tensor:
    """SDPA over each segment (valid tokens, heads, dim); grouped-query heads natively. The values come
    padded to the q/k width, as the CPU's fused kernel needs (without it SDPA falls back to the math kernel,
    which stores the segment's full score matrix per head)."""
    pieces = []
    cu = plan.cu_seqlens.tolist()
    gqa = fk.shape[1] != fq.shape[1]
    for start, end in zip(cu[:-1], cu[1:], strict=True):
        seg = [x[start:end].transpose(0, 1)[None] for x in (fq, fk, fv)]  # (1, heads, n, dim)
        o = F.scaled_dot_product_attention(*seg, is_causal=plan.causal, scale=scale, enable_gqa=gqa)
        pieces.append(o[0].transpose(0, 1))
    return torch.cat(pieces, dim=0)
