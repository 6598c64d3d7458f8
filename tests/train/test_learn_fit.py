"""`rsneo.train.learn_fit`: the head's per-pixel layers and class vectors trained on labelled pixels."""

from __future__ import annotations

import pytest
import torch

from rsneo.train.learn_config import LearnSettings
from rsneo.train.learn_fit import fit_head, pixel_logits


def test_pixels_only_head_ignores_the_backbone_context(tiny_system, flood_windows):
    """--features pixels: the context projection is zeroed and stays so; logits depend on the bands only."""
    labels, windows = flood_windows
    init = torch.randn(2, tiny_system.config.hidden_size)
    use = torch.ones(24, dtype=torch.bool)
    head, vectors = fit_head(
        tiny_system.segmentation, init, windows, use, LearnSettings(steps=4, features="pixels")
    )
    assert torch.count_nonzero(head.decoder.to_full.weight) == 0
    assert (
        torch.count_nonzero(tiny_system.segmentation.decoder.to_full.weight) > 0
    )  # the base head is untouched
    w = windows[0]
    shuffled = type(w)(torch.randn_like(w.context), w.pixels, w.wavelengths, w.classes, w.feature)
    with torch.no_grad():
        torch.testing.assert_close(pixel_logits(head, w, vectors), pixel_logits(head, shuffled, vectors))
    full, _ = fit_head(tiny_system.segmentation, init, windows, use, LearnSettings(steps=4, features="all"))
    assert torch.count_nonzero(full.decoder.to_full.weight) > 0
    with pytest.raises(ValueError, match="features"):
        fit_head(tiny_system.segmentation, init, windows, use, LearnSettings(steps=1, features="auto"))
