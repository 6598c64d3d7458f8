"""The text and segmentation objectives, and the one backbone pass that the image and text objectives
share.

Masked band-group reconstruction lives in `rsneo.train.masking`; label-as-text segmentation is the
products head (`rsneo.heads.segmentation`), called here, not re-implemented.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsneo.model.inputs import ModelInputs
from rsneo.train.batch import SegmentationBatch


def backbone_forward(model: nn.Module, inputs: ModelInputs) -> Tensor:
    """One backbone pass: the last hidden state (batch, tokens, hidden), after the final norm."""
    return model.backbone(inputs).last_hidden_state


def language_model_loss(lm_head: nn.Module, hidden: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the tokens with a target; `labels` are next-token targets (-100 = none).

    Logits are computed only where there is a target: with a 150k-word vocabulary the full (batch, tokens,
    vocab) logits of an image-heavy batch would be most of the step's memory.
    """
    targets = labels >= 0  # (batch, tokens)
    logits = lm_head(hidden[targets])  # (targets, vocab)
    return F.cross_entropy(logits.float(), labels[targets])


def segmentation_loss(
    head: nn.Module,
    model: nn.Module,
    tokenizer,
    batch: SegmentationBatch,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Label-as-text segmentation loss: the products head on the chips' pixels against the class prompts.

    With `generator`, each class is named by itself or by one of its other names (`rsneo.heads.class_words`,
    drawn per step), so that the text side learns that "reservoir" means what "water" means."""
    from rsneo.heads.class_words import draw_class_names
    from rsneo.heads.segmentation import encode_class_prompts, image_features

    names = list(batch.class_names)
    if generator is not None:
        names = draw_class_names(names, generator)
    classes = encode_class_prompts(model, tokenizer, names, head.config)  # (K, hidden)
    features = image_features(model, batch.inputs, head.config.early_layer)
    logits = head(features, classes)  # (rows, K, H, W)
    return head.loss(logits, batch.labels)
