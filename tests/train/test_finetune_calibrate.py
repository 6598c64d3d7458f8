"""Calibration after fine-tuning: "none of these" starts where at most 1 % of the labelled validation pixels
fall, never above the head's threshold before; unlabelled pixels do not count."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from rsneo.train.finetune_calibrate import calibrate_abstention, said


class Cosines(torch.nn.Module):
    """Stands in for `FinetuneModule`: its logits are `scale` x the given cosines."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        config = SimpleNamespace(none_threshold=threshold)
        self.head, self.device = SimpleNamespace(scale=torch.tensor(10.0), config=config), torch.device("cpu")

    def transfer_batch_to_device(self, batch: dict, device: torch.device, index: int) -> dict:
        return batch

    def logits(self, batch: dict) -> torch.Tensor:
        return self.head.scale * batch["cosines"]


def batches(best: torch.Tensor, labels: torch.Tensor) -> list[dict]:
    """One batch (1, 2, 1, N) whose best cosine per pixel is `best` (the other class 0.5 lower)."""
    cosines = torch.stack([best, best - 0.5])[None, :, None]
    return [{"cosines": cosines, "labels": labels[None, None]}]


def test_the_threshold_falls_to_the_one_percent_quantile_of_labelled_pixels_only():
    best = torch.linspace(-0.5, 0.5, 1001) + 0.0005  # no cosine exactly 0
    labels = torch.zeros(1001, dtype=torch.long)
    labels[:100] = -1  # unlabelled: the lowest cosines, left out of the quantile
    module = Cosines(0.0)
    record = calibrate_abstention(module, batches(best, labels))
    before, share = record["before"], record["share_before"]
    assert before == 0.0
    assert share == pytest.approx(400 / 901)  # labelled pixels below cosine 0: -0.3995 .. -0.0005
    threshold = module.head.config.none_threshold
    assert threshold == pytest.approx(float(torch.quantile(best[100:], 0.01)))
    assert float((best[100:] < threshold).float().mean()) <= 0.01
    assert record == {"none_threshold": threshold, "before": 0.0, "share_before": share}
    line = said(record)
    assert f"below cosine {threshold:.3f}" in line and "(cosine 0.000, the threshold before" in line
    assert "would have abstained on 44.4%" in line


def test_a_threshold_already_low_enough_stays():
    module = Cosines(-0.9)
    calibrate_abstention(module, batches(torch.linspace(-0.5, 0.5, 101), torch.ones(101, dtype=torch.long)))
    assert module.head.config.none_threshold == -0.9


def test_without_labelled_validation_pixels_the_threshold_stays_and_nothing_is_said():
    module = Cosines(0.0)
    labels = torch.full((11,), -1, dtype=torch.long)
    assert calibrate_abstention(module, batches(torch.linspace(-0.5, 0.5, 11), labels)) is None
    assert module.head.config.none_threshold == 0.0


def test_a_large_batch_is_read_through_a_random_draw_of_its_pixels():
    best = torch.linspace(-1, 1, 200_001)  # more than PER_BATCH
    module = Cosines(0.0)
    calibrate_abstention(module, batches(best, torch.zeros(200_001, dtype=torch.long)))
    assert module.head.config.none_threshold == pytest.approx(-0.98, abs=0.005)  # the 1 % quantile
