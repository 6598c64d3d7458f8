"""Rotary position embeddings: Native-RoPE for queries/keys (T, H, W axes, and S as a phase) and NEO's 2D
rotary on patches.

Queries and keys use the rotate-half pairing of Qwen3 (channel i pairs with i + d/2); positions are floats so
T may be spaced by dates. The spectral coordinate S adds a learned phase to existing rotary pairs (each layer
its own frequencies, `NativeRopeTables.with_phase`): rotations compose, so a pair of a query at S and a key at
S' is turned by (S - S') x frequency on top of its T/H/W angle, and attention still sees relative positions
only. The patch embedding's 2D rotary pairs channels 2i and 2i+1 (interleaved), as the NEO reference does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


def _duplicated(cos: Tensor, sin: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Half tables (batch, tokens, pairs) -> rotate-half tables (batch, tokens, 2 x pairs) in `dtype`."""
    return torch.cat((cos, cos), dim=-1).to(dtype), torch.cat((sin, sin), dim=-1).to(dtype)


# Which rotary pairs of [T | H | W] carry the spectral phase (`RSNeoConfig.spectral_pairs`)
PHASE_AXES: dict[str, tuple[str, ...]] = {"none": (), "t": ("t",), "hw": ("h", "w"), "all": ("t", "h", "w")}


def phase_pairs(head_dim: int, spectral_pairs: str) -> int:
    """How many learned spectral frequencies a layer has: one per rotary pair that carries the phase."""
    sizes = {"t": head_dim // 2, "h": head_dim // 4, "w": head_dim // 4}
    return sum(sizes[axis] for axis in PHASE_AXES[spectral_pairs])


@dataclass
class NativeRopeTables:
    """cos/sin of every axis for one batch, computed once and shared by all layers.

    `t`, `h`, `w` are the rotate-half tables (batch, tokens, dim) in the hidden dtype. With the spectral
    phase (`RSNeoConfig.spectral_layout == "phase"`), the fp32 half tables of the axes that carry it and the S
    coordinates stay too, so that each layer adds its own phase (`with_phase`).
    """

    t: tuple[Tensor, Tensor]
    h: tuple[Tensor, Tensor]
    w: tuple[Tensor, Tensor]
    spectral: Tensor | None = None  # (batch, tokens) fp32 S coordinates, when a phase is added
    halves: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)  # axis -> fp32 (cos, sin) halves
    dtype: torch.dtype = torch.float32

    @classmethod
    def build(cls, positions: Tensor, config: Any, dtype: torch.dtype = torch.float32) -> NativeRopeTables:
        """positions (4, batch, tokens): T, H, W, S; `config` an `RSNeoConfig`; tables in `dtype` (the hidden
        states' dtype).

        Qwen3's linear `rope_scaling` (`rope_linear_factor`) divides the T and H/W positions, as NEO applies
        it to both; S is rsneo's own axis and keeps its scale. The duplicated tables of every axis are made
        from the same fp32 half tables that `with_phase` rotates further, so a zero phase gives exactly the
        shared tables.
        """
        c = config
        factor = c.rope_linear_factor
        scaled = positions[:3] / factor if factor != 1.0 else positions[:3]
        dims = {"t": (c.head_dim, c.rope_theta), "h": (c.head_dim // 2, c.rope_theta_hw)}
        dims["w"] = dims["h"]
        halves: dict[str, tuple[Tensor, Tensor]] = {}
        with torch.autocast(positions.device.type, enabled=False):
            for i, axis in enumerate(("t", "h", "w")):
                dim, base = dims[axis]
                angles = scaled[i].float()[..., None] * inverse_frequencies(dim, base, positions.device)
                halves[axis] = (angles.cos(), angles.sin())
        phased = PHASE_AXES[c.spectral_pairs] if c.spectral_layout == "phase" else ()
        return cls(
            *(_duplicated(*halves[axis], dtype) for axis in ("t", "h", "w")),
            spectral=positions[3].float() / c.spectral_unit if phased else None,
            halves={axis: halves[axis] for axis in phased},
            dtype=dtype,
        )

    def with_phase(self, frequencies: Tensor | None) -> tuple[tuple[Tensor, Tensor], ...]:
        """(t, h, w) tables of one layer: its spectral phase `S x frequencies` added to the angles of the
        pairs that carry it (`frequencies` (pairs,): T pairs, then H, then W, as `PHASE_AXES` lists them).

        Angle addition on the shared fp32 halves, cos(a + b) = cos a cos b - sin a sin b: with a zero phase
        (zero frequencies, or S = 0) cos b = 1 and sin b = 0 exactly, so every table equals the shared one
        bit for bit and the layer computes exactly what NEO / Qwen3 compute.
        """
        tables = {"t": self.t, "h": self.h, "w": self.w}
        if frequencies is None or self.spectral is None:
            return self.t, self.h, self.w
        with torch.autocast(self.spectral.device.type, enabled=False):
            phase = self.spectral[..., None] * frequencies.float()  # (batch, tokens, pairs)
            cos_b, sin_b = phase.cos(), phase.sin()
            start = 0
            for axis, (cos_a, sin_a) in self.halves.items():
                end = start + cos_a.shape[-1]
                cb, sb = cos_b[..., start:end], sin_b[..., start:end]
                tables[axis] = _duplicated(cos_a * cb - sin_a * sb, sin_a * cb + cos_a * sb, self.dtype)
                start = end
        return tables["t"], tables["h"], tables["w"]


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
