"""Segment labelled chips with a training module's backbone and head, for validation and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from rsneo.baselines import iou
from rsneo.data.documents import image_documents
from rsneo.heads.features import encode_class_prompts, image_features
from rsneo.model.positions import ImageTokens
from rsneo.train.corpus import LabelledChip


@torch.no_grad()
def predict_chips(
    model: nn.Module, head: nn.Module, tokenizer, chips: Sequence[LabelledChip], batch_size: int = 8
) -> list[np.ndarray]:
    """Class index per pixel (height, width) for each chip: argmax of the label-as-text logits over its
    classes."""
    was_training = model.training, head.training
    model.eval(), head.eval()
    tokens = ImageTokens.of(model.config)
    out: list[np.ndarray] = []
    classes = encode_class_prompts(model, tokenizer, list(chips[0].class_names), head.config)  # (K, hidden)
    for start in range(0, len(chips), batch_size):
        part = chips[start : start + batch_size]
        inputs = image_documents([[c.groups] for c in part], tokens)
        logits = head(image_features(model, inputs, head.config.early_layer), classes)  # (B, K, H, W)
        out += [m.numpy() for m in logits.argmax(1)]
    model.train(was_training[0]), head.train(was_training[1])
    return out


def class_iou(predicted: Sequence[np.ndarray], chips: Sequence[LabelledChip], value: int) -> float:
    """IoU of class `value` over the labelled pixels (label >= 0) of all chips together."""
    pred = np.concatenate([np.asarray(p).ravel() for p in predicted])
    labels = np.concatenate([chip.labels.numpy().ravel() for chip in chips])
    if pred.shape != labels.shape:
        raise ValueError(f"class_iou: {pred.size} predicted pixels for {labels.size} labelled ones")
    return iou(pred == value, labels == value, labels >= 0)
