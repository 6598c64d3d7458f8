"""Calibration of a fine-tuned head on its validation pixels, after training: the change head's cut (the
logit of best validation F1) and the segmentation head's "none of these" threshold."""

from __future__ import annotations

import torch
from torch import Tensor

from rsneo.heads.features import image_features
from rsneo.train.abstain import DEFAULT_RATE, calibrated_threshold
from rsneo.train.finetune_metrics import best_cut
from rsneo.train.finetune_module import FinetuneModule

PER_BATCH = 65_536  # labelled pixels of one validation batch that calibration reads, at most
QUANTILE_LIMIT = 2**24  # and of all batches together (64 MiB)


@torch.no_grad()
def calibrate(module: FinetuneModule, loader) -> float:
    """Set the change head's bias so that P = 0.5 falls on the cut of best validation F1; returns the cut."""
    module.eval()
    logits, labels = [], []
    for batch in loader:
        batch = module.transfer_batch_to_device(batch, module.device, 0)
        features = image_features(
            module.model, batch["inputs"], module.head.config.early_layer, batch["frames"]
        )
        logits.append(module.head.change_logit(features).flatten().cpu())
        labels.append(batch["labels"].flatten().cpu())
    cut = best_cut(torch.cat(logits), torch.cat(labels))
    module.head.config.bias = -cut
    return cut


@torch.no_grad()
def calibrate_abstention(module: FinetuneModule, loader) -> dict[str, float] | None:
    """Lower the segmentation head's "none of these" threshold to the cosine that `DEFAULT_RATE` of the
    labelled validation pixels fall below (the rule `rsneo.train.abstain` applies to the bundled model), never
    raising it; returns the record of finetune.json: the threshold now (`none_threshold`), the one `before`
    and the share of those pixels it abstained on (`share_before`); None without labelled validation pixels
    (the threshold stays).

    Why: cross-entropy over the named classes fixes only the differences between their cosines, so a head
    trained on land and water can rank a pixel right while both cosines are negative: with the default
    threshold (cosine 0) such a head abstained on 30 % of a Sentinel-1 chip it classifies well."""
    module.eval()
    best, draw = [], torch.Generator().manual_seed(0)
    for batch in loader:
        batch = module.transfer_batch_to_device(batch, module.device, 0)
        cosines = module.logits(batch) / module.head.scale
        labels = batch["labels"]
        labelled = (labels >= 0) & (labels < cosines.shape[1])
        best.append(at_most(cosines.amax(1)[labelled].float().cpu(), PER_BATCH, draw))
    cosines = at_most(torch.cat(best), QUANTILE_LIMIT, draw)
    if not len(cosines):
        return None
    config = module.head.config
    before = float(config.none_threshold)
    config.none_threshold = calibrated_threshold(cosines, before)
    share = float((cosines < before).float().mean())
    return {"none_threshold": float(config.none_threshold), "before": before, "share_before": share}


def at_most(values: Tensor, count: int, draw: torch.Generator) -> Tensor:
    """`values`, or `count` of them drawn at random: a 1 % quantile does not need every pixel of a large
    validation set, and the draw bounds the memory and the sort it would take."""
    if len(values) <= count:
        return values
    return values[torch.randperm(len(values), generator=draw)[:count]]


def said(record: dict[str, float]) -> str:
    """The summary's line on a calibrated "none of these"."""
    return (
        f'"none of these" below cosine {record["none_threshold"]:.3f}: at most {DEFAULT_RATE:.0%} of the '
        f"labelled validation pixels (cosine {record['before']:.3f}, the threshold before, would have "
        f"abstained on {record['share_before']:.1%})"
    )
