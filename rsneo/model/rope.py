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


def rotary_tables(positions: Tensor, dim: int, base: float) -> tuple[Tensor, Tensor]:
    """cos and sin (batch, tokens, dim) for rotate-half rotary at float `positions` (batch, tokens)."""
    inv = inverse_frequencies(dim, base, positions.device)
    angles = positions.float()[..., None] * inv  # (batch, tokens, dim/2)
    emb = torch.cat((angles, angles), dim=-1)
    return emb.cos(), emb.sin()


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
    ) -> NativeRopeTables:
        """positions (4, batch, tokens): T, H, W, S."""
        half = head_dim // 2
        return cls(
            t=rotary_tables(positions[0], head_dim, theta),
            h=rotary_tables(positions[1], half, theta_hw),
            w=rotary_tables(positions[2], half, theta_hw),
            s=rotary_tables(positions[3], spectral_dim, theta_s) if spectral_dim else None,
        )


def apply_rotary_interleaved(x: Tensor, positions: Tensor, base: float) -> Tensor:
    """Rotate pairs (2i, 2i+1) of x (..., d) by positions (...) at frequencies 1/base^(2i/d)."""
    dim = x.shape[-1]
    angles = positions.float()[..., None] * inverse_frequencies(dim, base, x.device)  # (..., d/2)
    cos, sin = angles.cos(), angles.sin()
    even, odd = x[..., 0::2], x[..., 1::2]
    out = torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1)
    return out.flatten(-2)


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
