"""`rsneo.train.pairs`: simulated change pairs for the change objective, reproducible, honestly labelled."""

from __future__ import annotations

import torch

from rsneo.train.batch import ChangeSource
from rsneo.train.pairs import changed_percent, rms_difference, simulate_pair


def test_simulated_pairs_label_pasted_differences_only(flood_samples):
    source = flood_samples[5].change
    donors = [torch.cat([g.pixels for g in s.change.frames[0]]) for s in flood_samples[6:9]]
    seen_change = 0
    for seed in range(12):
        before, after, labels, _ = simulate_pair(source, torch.Generator().manual_seed(seed), donors)
        again = simulate_pair(source, torch.Generator().manual_seed(seed), donors)
        assert torch.equal(labels, again[2])  # reproducible from the step's generator
        assert labels.shape == before[0].pixels.shape[-2:] and set(labels.unique().tolist()) <= {-1, 0, 1}
        assert [g.band_keys for g in before] == [g.band_keys for g in after]
        difference = rms_difference(
            torch.cat([g.pixels for g in before]), torch.cat([g.pixels for g in after])
        )
        if (labels == 1).any() and (labels == 0).any():
            assert difference[labels == 1].mean() > 2 * difference[labels == 0].mean()
            seen_change += 1
    assert seen_change > 3


def test_a_real_second_date_marks_only_small_differences_unchanged(flood_samples):
    frame = flood_samples[0].change.frames[0]
    other = flood_samples[20].change.frames[0]  # a different place stands in for a changed later date
    source = ChangeSource([frame, other], ["2000-01-01", "2005-01-01"])
    for seed in range(8):
        _, _, labels, dates = simulate_pair(source, torch.Generator().manual_seed(seed))
        if None not in dates:  # the real later date was used (a simulated one has no date)
            assert (labels == -1).float().mean() >= 0.5  # half or more of an unlabelled pair is not trusted


def test_changed_percent_counts_ignored_pixels_as_unchanged():
    labels = torch.tensor([[1, 0, -1, -1], [1, 0, 0, -1]])  # 2 changed of 8 pixels
    assert abs(changed_percent(labels) - 25.0) < 1e-9
