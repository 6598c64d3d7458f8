"""Label-as-text segmentation: classes are words, pixels are matched to them by scaled cosine similarity.

Class vectors: each class name is put in a prompt (`prompt_template`), run through the backbone as text, and
the last token's final hidden state is pooled (the head noun of an English class name comes last, so "open
water" and "water" land close) and projected. Pixel features: the image tokens' last and early-layer hidden
states (one per 32x32 pixels) go through a light decoder (1x1 conv, x4 upsampling conv, full-resolution fusion
with a wavelength-conditioned per-pixel stem, so edges are sharp for any band set). Logits are `scale *
cos(pixel, class)`. A class never seen in training only needs its prompt encoded; "none of these" is a fixed
extra logit `scale * none_threshold`, so a pixel whose best cosine stays below the threshold belongs to no
class.

Training API (used by rsneo/train for the segmentation objective)::

    head = SegmentationHead(SegmentationHeadConfig(hidden_size=config.hidden_size))
    classes = encode_class_prompts(model, tokenizer, ["water", "land"], head.config)  # (K, hidden)
    feats = image_features(model, inputs, head.config.early_layer)                      # ImageFeatures
    logits = head(feats, classes)                                                     # (B, K, H, W)
    loss = head.loss(logits, labels)                # labels (B, H, W) long, -1 (or >= K) = ignored
    probs = head.probabilities(logits)              # (B, K + 1, H, W), last = "none of these"

`encode_class_prompts` and `image_features` are the backbone's side (`rsneo.heads.features`); `inputs` is a
`ModelInputs` of one-frame image documents (`rsneo.data.documents.image_documents` builds one per window).
The decoder is shared with the change head (`rsneo.heads.decoder`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsneo.heads.decoder import IGNORE, PixelDecoder
from rsneo.heads.features import ImageFeatures

NONE_OF_THESE = "none of these"  # the class of `probabilities`' last channel, as the products name it


@dataclass
class SegmentationHeadConfig:
    """Sizes of the segmentation head; saved in heads.json."""

    hidden_size: int
    dim: int = 32  # shared embedding width of pixels and classes
    decoder_channels: int = 48  # at 1/8 resolution
    full_channels: int = 24  # at full resolution
    stem_channels: int = 16  # per-pixel wavelength-conditioned stem
    early_layer: int = 1  # hidden_states index of the early, less abstract features (0 = embeddings)
    prompt_template: str = "a satellite image of {}"
    none_threshold: float = 0.0  # cosine below which a pixel is "none of these"
    init_scale: float = 10.0


class SegmentationHead(nn.Module):
    """Scaled-cosine matching of decoded pixel features against class-prompt vectors."""

    def __init__(self, config: SegmentationHeadConfig) -> None:
        super().__init__()
        self.config = config
        self.decoder = PixelDecoder.from_config(config)
        self.class_proj = nn.Sequential(
            nn.Linear(config.hidden_size, config.hidden_size),
            nn.GELU(),
            nn.Linear(config.hidden_size, config.dim),
        )
        self.log_scale = nn.Parameter(torch.tensor(math.log(config.init_scale)))

    @property
    def scale(self) -> Tensor:
        return self.log_scale.exp().clamp(max=100.0)

    def class_embeddings(self, class_vectors: Tensor) -> Tensor:
        """(K, hidden) pooled prompt states -> (K, dim) unit vectors."""
        return F.normalize(self.class_proj(class_vectors), dim=-1)

    def pixel_embeddings(self, features: ImageFeatures, frame: int = 0) -> Tensor:
        """(B, dim, H, W) unit pixel vectors of one frame."""
        f, i = features, frame
        out = self.decoder(f.last[:, i], f.early[:, i], f.pixels[:, i], f.wavelengths, f.band_keys)
        return F.normalize(out, dim=1)

    def forward(self, features: ImageFeatures, class_vectors: Tensor, frame: int = 0) -> Tensor:
        """Logits (B, K, H, W) = scale * cosine(pixel, class)."""
        return self.match(self.pixel_embeddings(features, frame), class_vectors)

    def match(self, pixels: Tensor, class_vectors: Tensor) -> Tensor:
        """Unit pixel vectors (B, dim, ...) and (K, hidden) class vectors -> logits (B, K, ...)."""
        classes = self.class_embeddings(class_vectors)  # (K, dim)
        return self.scale * torch.einsum("bd...,kd->bk...", pixels, classes)

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy over the given classes; labels (B, H, W), -1 or any value >= K is ignored."""
        labels = labels.long()
        # `where`, not a boolean assignment: an index by mask is a nonzero (a host sync on an accelerator)
        labels = torch.where((labels < 0) | (labels >= logits.shape[1]), IGNORE, labels)
        return F.cross_entropy(logits, labels, ignore_index=IGNORE)

    def probabilities(self, logits: Tensor, none_threshold: float | None = None) -> Tensor:
        """(B, K + 1, H, W) softmax; the last channel, "none of these", has the logit scale * threshold."""
        threshold = self.config.none_threshold if none_threshold is None else none_threshold
        none = (self.scale * threshold).expand_as(logits[:, :1])
        return torch.cat([logits, none], dim=1).softmax(dim=1)

    def to_json(self) -> dict:
        return asdict(self.config)
