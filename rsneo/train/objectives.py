"""The language-modelling objective: next-token cross-entropy at positions chosen on the host.

Masked band-group reconstruction lives in `rsneo.train.masking`, label-as-text segmentation is the products
head (`rsneo.heads.segmentation`), the change objective `rsneo.train.change`; `rsneo.train.step` lays them all
out for the one backbone pass of a step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def lm_targets(labels: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
    """Rows, columns and targets (each (n,) long) of the tokens with a next-token target (`labels` >= 0,
    -100 = none), row-major; None when there is none. Called on the host (CPU labels, at the step's
    planning): the count of targets is a data-dependent shape, which read on an accelerator is a host sync."""
    rows, cols = torch.nonzero(labels >= 0, as_tuple=True)
    if rows.numel() == 0:
        return None
    return rows, cols, labels[rows, cols]


def language_model_loss(lm_head: nn.Module, states: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of the next tokens `targets` (n,) from the hidden `states` (n, hidden) of the
    tokens that have one (gathered at positions from `lm_targets`).

    Logits are computed only where there is a target: with a 150k-word vocabulary the full (batch, tokens,
    vocab) logits of an image-heavy batch would be most of the step's memory, and the positions come from
    the host, so the gather has a fixed shape.
    """
    return F.cross_entropy(lm_head(states).float(), targets)
