"""The fine-tuned heads (rsneo.heads.finetuned): what they read, how they are saved, bf16, and their loss."""

from __future__ import annotations

import torch

from rsneo.heads.features import ImageFeatures
from rsneo.heads.finetuned import (
    FinetunedChangeHead,
    FinetunedChangeHeadConfig,
    FinetunedSegmentationHead,
    FinetunedSegmentationHeadConfig,
    change_loss,
    head_from_json,
    is_finetuned,
)

HIDDEN = 64
WIDTHS = [8, 16, 16, 24]  # small pyramids: the tests check behaviour, not capacity


def features(seed: int = 0, size: int = 64, frames: int = 2) -> ImageFeatures:
    g = torch.Generator().manual_seed(seed)
    grid = size // 32
    return ImageFeatures(
        torch.randn(2, frames, HIDDEN, grid, grid, generator=g),
        torch.randn(2, frames, HIDDEN, grid, grid, generator=g),
        torch.randn(2, frames, 3, size, size, generator=g),
        torch.tensor([0.665, 0.56, 0.49]),
    )


def change_head(**options) -> FinetunedChangeHead:
    torch.manual_seed(0)
    options = {"widths": WIDTHS} | options
    return FinetunedChangeHead(FinetunedChangeHeadConfig(hidden_size=HIDDEN, **options)).eval()


def test_change_head_gives_full_resolution_logits_with_no_change_fixed_at_zero():
    logits = change_head()(features())
    assert logits.shape == (2, 2, 64, 64)
    assert torch.equal(logits[:, 0], torch.zeros_like(logits[:, 0]))  # softmax: P(change) = sigmoid
    assert logits[:, 1].std() > 0


def test_the_calibration_bias_shifts_the_change_logit_only():
    head = change_head()
    before = head(features())[:, 1]
    head.config.bias = 0.75
    assert torch.allclose(head(features())[:, 1], before + 0.75, atol=1e-6)


def test_tokens_start_at_zero_and_reach_the_map_once_trained_unless_switched_off():
    """The token projection starts at zero (the convolutional branch alone); once it has weights, the tokens
    change the map; with `tokens` off they never do."""
    other = features(seed=1)
    base, mixed = features(), features()
    mixed.last, mixed.early = other.last, other.early
    head = change_head(tokens=True)
    assert torch.equal(head(base), head(mixed))  # untrained: tokens weigh nothing yet
    torch.nn.init.normal_(head.tokens.project.weight, std=0.05)  # as training moves it
    assert not torch.allclose(head(base), head(mixed))
    head = change_head(tokens=False)
    assert head.tokens is None and torch.equal(head(base), head(mixed))


def test_a_pixel_changed_in_one_date_moves_the_map_near_it_only_within_the_receptive_field():
    """The decoder restores detail below the 32-pixel token grid: one altered pixel of the second date changes
    the logits around it much more than the logits of the far corner."""
    head = change_head(tokens=False)
    base = features()
    altered = features()
    altered.pixels = base.pixels.clone()
    altered.pixels[:, 1, :, 40, 40] += 5.0
    delta = (head(altered)[:, 1] - head(base)[:, 1]).abs()
    assert delta[:, 38:43, 38:43].max() > 100 * delta[:, :8, :8].max().clamp(min=1e-9)


def test_heads_round_trip_through_heads_json_with_their_kind(tmp_path):
    from rsneo.heads.system import load_heads, save_heads

    change = change_head()
    change.config.bias = -0.3
    seg = FinetunedSegmentationHead(FinetunedSegmentationHeadConfig(hidden_size=HIDDEN, widths=WIDTHS))
    save_heads(tmp_path, seg.eval(), change)
    seg2, change2, loaded = load_heads(tmp_path, HIDDEN)
    assert loaded == ("segmentation", "change")
    assert is_finetuned(seg2) and is_finetuned(change2) and change2.config.bias == -0.3
    f = features()
    assert torch.allclose(change2.eval()(f), change(f), atol=1e-6)
    classes = torch.randn(3, HIDDEN)
    assert torch.allclose(seg2.eval()(f, classes), seg(f, classes), atol=1e-5)


def test_polarisation_rows_round_trip_and_older_entries_load_without_them(tmp_path):
    """A head with polarisation rows saves and loads them (a radar pair reads the same after the round trip);
    a heads.json entry written before the rows existed builds a head without them."""
    from rsneo.heads.system import load_heads, save_heads

    change = change_head(polarisation=True)
    with torch.no_grad():
        change.encoder.stem.polarisations.copy_(torch.randn_like(change.encoder.stem.polarisations))
    f = features()
    radar = ImageFeatures(f.last, f.early, f.pixels[:, :, :2], torch.tensor([55465.0, 55465.0]), ("vv", "vh"))
    save_heads(tmp_path, None, change)
    _, loaded, _ = load_heads(tmp_path, HIDDEN)
    assert loaded.config.polarisation is True
    assert torch.allclose(loaded.eval()(radar), change(radar), atol=1e-6)
    entry = change_head().to_json()
    del entry["polarisation"]
    old = head_from_json("change", entry)
    assert old.config.polarisation is False and old.encoder.stem.polarisations is None


def test_bundled_kind_is_built_from_entries_without_a_decoder():
    from rsneo.heads.change import ChangeHead
    from rsneo.heads.segmentation import SegmentationHead

    assert type(head_from_json("change", {"hidden_size": HIDDEN})) is ChangeHead
    assert type(head_from_json("segmentation", {"hidden_size": HIDDEN})) is SegmentationHead


def test_heads_run_in_bf16_close_to_float32():
    """Optical and radar bands (the polarisation rows in bf16 too)."""
    optical = features()
    radar = change_head(polarisation=True)
    with torch.no_grad():
        radar.encoder.stem.polarisations.copy_(torch.randn_like(radar.encoder.stem.polarisations))
    o = optical
    sar = ImageFeatures(o.last, o.early, o.pixels[:, :, :2], torch.tensor([55465.0, 55465.0]), ("vv", "vh"))
    for head, run, f in (
        (change_head(), lambda h, x: h(x)[:, 1], optical),
        (FinetunedSegmentationHead(FinetunedSegmentationHeadConfig(hidden_size=HIDDEN, widths=WIDTHS)).eval(),
         lambda h, x: h(x, torch.ones(2, HIDDEN, dtype=x.last.dtype)), optical),
        (radar, lambda h, x: h(x)[:, 1], sar),
    ):  # fmt: skip
        reference = run(head, f)
        half = ImageFeatures(
            f.last.bfloat16(), f.early.bfloat16(), f.pixels.bfloat16(), f.wavelengths, f.band_keys
        )
        out = run(head.bfloat16(), half)
        assert out.dtype == torch.bfloat16
        # bf16 keeps 8 bits of mantissa (0.4 % per rounding): within 2 % of the logits' size after ~20 layers
        assert (out.float() - reference).abs().mean() < 0.02 * reference.abs().mean()


def test_change_loss_ignores_unlabelled_pixels_and_weighs_the_rare_class():
    logit = torch.zeros(1, 8, 8, requires_grad=True)
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, :2] = 1
    labels[0, 6:] = -1
    change_loss(logit, labels).backward()
    assert torch.equal(logit.grad[0, 6:], torch.zeros(2, 8))  # unlabelled: no gradient
    assert (logit.grad[0, :2] < 0).all() and (logit.grad[0, 2:6] > 0).all()  # toward the labels
    # Dice: the 16 changed pixels pull harder each than the 32 unchanged ones push
    assert logit.grad[0, :2].abs().mean() > logit.grad[0, 2:6].abs().mean()
