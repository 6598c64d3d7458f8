"""Calibrate a model folder's "none of these" threshold on the pixels its segmentation head trained on.

`rsneo segment` calls a pixel "none of these" when its best cosine to the named classes stays below the
head's `none_threshold` (rsneo/heads/segmentation.py). The default, cosine 0, suits one model and not the
next: a model whose pixel and class vectors sit further apart abstains on pixels it was trained to classify.
This step measures the product's own class vectors against the labelled training pixels (Sen1Floods11, left
half only, with the model's band groups) and lowers the threshold to the cosine that `rate` of those pixels
fall below, never raising it above the head's current one: at most that share of pixels of a trained class
is abstained on, and pixels unlike every class still are. Held-out data is never read.

Usage: python -m rsneo.train.abstain MODEL [--rate 0.01] [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rsneo.data.documents import image_documents
from rsneo.heads.features import image_features
from rsneo.heads.fewshot import class_vectors
from rsneo.heads.system import load_system, save_heads
from rsneo.train.config import resolve_data_root
from rsneo.train.teach_words import flood_chips

DEFAULT_RATE = 0.01


@torch.no_grad()
def best_cosines(system, chips) -> torch.Tensor:
    """(N,) the best cosine of each labelled pixel of `chips` to its classes, as `rsneo segment` scores it."""
    head = system.segmentation
    vectors = class_vectors(system, list(chips[0].class_names))
    best = []
    for chip in chips:
        inputs = image_documents([[chip.groups]], system.model.config)
        cosines = head(image_features(system.model, inputs, head.config.early_layer), vectors)[0] / head.scale
        best.append(cosines.max(0).values[chip.labels >= 0].float())
    return torch.cat(best)


def calibrated_threshold(cosines: torch.Tensor, current: float, rate: float = DEFAULT_RATE) -> float:
    """The cosine `rate` of the trained pixels fall below, or `current` when that is lower already."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate: expected a share in (0, 1), got {rate}")
    return min(float(current), float(torch.quantile(cosines, rate)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE)
    parser.add_argument("--data-root", default="../shared/data")
    args = parser.parse_args()
    system = load_system(args.model)
    cosines = best_cosines(system, flood_chips(system, resolve_data_root(args.data_root)))
    config = system.segmentation.config
    before = config.none_threshold
    config.none_threshold = calibrated_threshold(cosines, before, args.rate)
    save_heads(args.model, system.segmentation, system.change)
    below = float((cosines < before).float().mean())
    print(
        f"none_threshold {before:.4f} -> {config.none_threshold:.4f} ({below:.2%} of {len(cosines):,} "
        f"trained pixels were below the old one, {args.rate:.2%} allowed)"
    )


if __name__ == "__main__":
    main()
