"""Rotary position embeddings: Native-RoPE for queries/keys (T, H, W, S axes) and NEO's 2D rotary on patches.

Queries and keys use the rotate-half pairing of Qwen3 (channel i pairs with i + d/2); positions are floats so
T
may be spaced by dates and S is a spectral coordinate. The patch embedding's 2D rotary pairs channels 2i and
2i+1
(interleaved), as the NEO reference does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def inverse_frequencies(dim: int, base: float, device: torch.device | None = None) -> Tensor:
    """(dim/2,) float32, computed as transformers computes Qwen3's, so logits match to the last bits."""
    exponents = torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim
    return 1.0 / (base**exponents)


def rotary_tables(
    positions: Tensor, dim: int, base: float, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """cos and sin (batch, tokens, dim) for rotate-half rotary at float `positions` (batch, tokens).

    Angles are computed in fp32 (bf16 cannot even hold positions above 256 exactly), then cast to the
    hidden dtype as Qwen3/NEO cast them, so queries and keys keep their dtype through the rotation.
    """
    inv = inverse_frequencies(dim, base, positions.device)
    with torch.autocast(positions.device.type, enabled=False):
        angles = positions.float()[..., None] * inv  # (batch, tokens, dim/2)
        emb = torch.cat((angles, angles), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x (batch, heads, tokens, dim); cos/sin (batch, tokens, dim)."""
    cos, sin = cos[:, None], sin[:, None]
    return x * cos + rotate_half(x) * sin


@dataclass
class NativeRopeTables:
    """cos/sin of every axis for one batch, computed once and shared by all layers."""

    t: tuple[Tensor, Tensor]
    h: tuple[Tensor, Tensor]
    w: tuple[Tensor, Tensor]
    s: tuple[Tensor, Tensor] | None

    @classmethod
    def build(
        cls,
        positions: Tensor,
        head_dim: int,
        spectral_dim: int,
        theta: float,
        theta_hw: float,
        theta_s: float,
        dtype: torch.dtype = torch.float32,
        linear_factor: float = 1.0,
    ) -> NativeRopeTables:
        """positions (4, batch, tokens): T, H, W, S; cos/sin in `dtype` (the hidden states' dtype).

        `linear_factor` is Qwen3's linear `rope_scaling` (positions divided by the factor); NEO applies it
        to T and to H/W, so it is applied there; S is rsneo's own axis and keeps its scale.
        """
        half = head_dim // 2
        scaled = positions[:3] / linear_factor if linear_factor != 1.0 else positions[:3]
        return cls(
            t=rotary_tables(scaled[0], head_dim, theta, dtype),
            h=rotary_tables(scaled[1], half, theta_hw, dtype),
            w=rotary_tables(scaled[2], half, theta_hw, dtype),
            s=rotary_tables(positions[3], spectral_dim, theta_s, dtype) if spectral_dim else None,
        )


def apply_rotary_interleaved(x: Tensor, positions: Tensor, base: float) -> Tensor:
    """Rotate pairs (2i, 2i+1) of x (..., d) by positions (...) at frequencies 1/base^(2i/d).

    Computed in fp32 and cast back to x's dtype, as NEO's patch rotary does.
    """
    dim = x.shape[-1]
    with torch.autocast(x.device.type, enabled=False):
        angles = positions.float()[..., None] * inverse_frequencies(dim, base, x.device)  # (..., d/2)
        cos, sin = angles.cos(), angles.sin()
        xf = x.float()
        even, odd = xf[..., 0::2], xf[..., 1::2]
        out = torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1)
    return out.flatten(-2).to(x.dtype)


def patch_rope_2d(features: Tensor, base: float) -> Tensor:
    """NEO's rotary on patch features (channels, rows, cols): first half of channels by column, then row."""
    channels, rows, cols = features.shape
    x = features.permute(1, 2, 0)  # (rows, cols, channels)
    col = torch.arange(cols, device=x.device).expand(rows, cols)
    row = torch.arange(rows, device=x.device)[:, None].expand(rows, cols)
    half = channels // 2
    out = torch.cat(
        (
            apply_rotary_interleaved(x[..., :half], col, base),
            apply_rotary_interleaved(x[..., half:], row, base),
        ),
        dim=-1,
    )
    return out.permute(2, 0, 1)
