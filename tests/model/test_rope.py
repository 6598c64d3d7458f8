"""Rotary embeddings against references: transformers' Qwen3 rotate-half, complex rotation for NEO's
interleaved patch rotary, and the relative-position property every rotary must have."""

from __future__ import annotations

import torch
from transformers.models.qwen3.modeling_qwen3 import apply_rotary_pos_emb

from rsneo.model.rope import (
    NativeRopeTables,
    apply_rotary,
    apply_rotary_interleaved,
    inverse_frequencies,
    patch_rope_2d,
    rotary_tables,
)

# fp32 rotations of O(1) values: errors are a few ulps of the angle terms; 1e-5 leaves room for positions ~1e3
ATOL = 1e-5


def test_rotate_half_matches_qwen3():
    torch.manual_seed(0)
    q, k = torch.randn(2, 4, 7, 16), torch.randn(2, 4, 7, 16)
    positions = torch.tensor([[0.0, 1, 2, 3, 10, 11, 500], [5.0, 5, 5, 6, 7, 8, 9]])
    cos, sin = rotary_tables(positions, 16, 10_000.0)
    expected_q, expected_k = apply_rotary_pos_emb(q, k, cos, sin)
    torch.testing.assert_close(apply_rotary(q, cos, sin), expected_q, rtol=0, atol=ATOL)
    torch.testing.assert_close(apply_rotary(k, cos, sin), expected_k, rtol=0, atol=ATOL)


def test_inverse_frequencies_are_the_rope_formula():
    expected = 1.0 / (1_000_000.0 ** (torch.arange(0, 64, 2, dtype=torch.float64) / 64))
    torch.testing.assert_close(inverse_frequencies(64, 1_000_000.0).double(), expected, rtol=1e-6, atol=0)


def test_scores_depend_only_on_the_position_difference():
    """<R(p) q, R(p') k> = <R(p + d) q, R(p' + d) k>: attention sees relative positions only."""
    torch.manual_seed(1)
    q, k = torch.randn(1, 1, 1, 32), torch.randn(1, 1, 1, 32)

    def score(p: float, p2: float) -> torch.Tensor:
        cq, sq = rotary_tables(torch.tensor([[p]]), 32, 10_000.0)
        ck, sk = rotary_tables(torch.tensor([[p2]]), 32, 10_000.0)
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum()

    torch.testing.assert_close(score(3.0, 1.0), score(103.0, 101.0), rtol=0, atol=1e-4)
    torch.testing.assert_close(score(2.5, 0.0), score(12.5, 10.0), rtol=0, atol=1e-4)  # float T (dates)
    assert not torch.isclose(score(3.0, 1.0), score(3.0, 2.0), atol=1e-3)  # the difference does matter


def test_interleaved_rotary_is_complex_multiplication():
    torch.manual_seed(2)
    x = torch.randn(5, 8)
    positions = torch.arange(5.0)
    pairs = torch.view_as_complex(x.double().reshape(5, 4, 2).contiguous())
    angles = positions.double()[:, None] * (1.0 / (100.0 ** (torch.arange(0, 8, 2).double() / 8)))
    expected = torch.view_as_real(pairs * torch.polar(torch.ones_like(angles), angles)).reshape(5, 8)
    torch.testing.assert_close(
        apply_rotary_interleaved(x, positions, 100.0).double(), expected, rtol=0, atol=ATOL
    )
    norms = apply_rotary_interleaved(x, positions, 100.0).reshape(5, 4, 2).norm(dim=-1)
    torch.testing.assert_close(norms, x.reshape(5, 4, 2).norm(dim=-1), rtol=0, atol=ATOL)  # rotations


def test_patch_rotary_rotates_channel_halves_by_column_then_row():
    torch.manual_seed(3)
    features = torch.randn(8, 3, 4)  # (channels, rows, cols)
    out = patch_rope_2d(features, 10_000.0)
    torch.testing.assert_close(out[:, 0, 0], features[:, 0, 0], rtol=0, atol=0)  # position (0, 0): identity
    col = apply_rotary_interleaved(features[:4].permute(1, 2, 0), torch.arange(4.0).expand(3, 4), 10_000.0)
    row = apply_rotary_interleaved(
        features[4:].permute(1, 2, 0), torch.arange(3.0)[:, None].expand(3, 4), 10_000.0
    )
    torch.testing.assert_close(out[:4], col.permute(2, 0, 1), rtol=0, atol=0)
    torch.testing.assert_close(out[4:], row.permute(2, 0, 1), rtol=0, atol=0)


def test_linear_scaling_divides_t_h_w_but_not_s():
    from rsneo.model import RSNeoConfig

    positions = torch.tensor([[[0.0, 4, 8]], [[0.0, 2, 6]], [[0.0, 6, 2]], [[0.5, 1.5, 3.0]]])  # (4, 1, 3)
    scaled = NativeRopeTables.build(positions, RSNeoConfig(rope_linear_factor=2.0))
    plain = NativeRopeTables.build(positions / torch.tensor([2.0, 2, 2, 1])[:, None, None], RSNeoConfig())
    for axis in ("t", "h", "w"):
        for got, want in zip(getattr(scaled, axis), getattr(plain, axis), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(scaled.spectral, positions[3], rtol=0, atol=0)  # S keeps its scale


def test_the_spectral_phase_adds_s_times_frequency_to_each_pair_angle():
    from rsneo.model import RSNeoConfig

    config = RSNeoConfig(spectral_pairs="all")  # head_dim 16: T 8 pairs, H 4, W 4
    positions = torch.tensor([[[0.0, 3, 7]], [[0.0, 1, 2]], [[0.0, 2, 1]], [[10.2, 16.5, 0.0]]])
    tables = NativeRopeTables.build(positions, config)
    freqs = torch.linspace(-0.5, 0.5, 16)
    t, h, w = tables.with_phase(freqs)
    s = positions[3, 0].double()[:, None]
    for (cos, sin), axis, row, dim, base, pairs in (
        (t, "t", 0, 16, config.rope_theta, slice(0, 8)),
        (h, "h", 1, 8, config.rope_theta_hw, slice(8, 12)),
        (w, "w", 2, 8, config.rope_theta_hw, slice(12, 16)),
    ):
        angles = positions[row, 0].double()[:, None] * inverse_frequencies(dim, base).double()
        angles = angles + s * freqs[pairs].double()
        emb = torch.cat((angles, angles), -1)[None]
        torch.testing.assert_close(cos.double(), emb.cos(), rtol=0, atol=ATOL, msg=axis)
        torch.testing.assert_close(sin.double(), emb.sin(), rtol=0, atol=ATOL, msg=axis)
    # zero frequencies: the shared tables exactly; "t" leaves H and W tables untouched
    for got, want in zip(tables.with_phase(torch.zeros(16)), (tables.t, tables.h, tables.w), strict=True):
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    # `spectral_unit`: the phase's position is S in that unit (S / unit x frequency)
    per_unit = NativeRopeTables.build(positions, RSNeoConfig(spectral_unit=16.0))
    torch.testing.assert_close(per_unit.spectral, positions[3] / 16.0, rtol=0, atol=0)
    only_t = NativeRopeTables.build(positions, RSNeoConfig(spectral_pairs="t"))
    _, h_t, w_t = only_t.with_phase(torch.ones(8))
    assert h_t is only_t.h and w_t is only_t.w
