"""Change head: per-location features of two frames of one scene (seen together with the `scene` mask) ->
change.

Each frame's image tokens (last and early layer) are decoded to full-resolution embeddings with the same light
decoder as segmentation; the change logit is a scaled cosine distance between the two dates' embeddings,
shifted by a learned threshold, plus a small learned correction from their difference and product. The "no
change" logit is 0, so `softmax` gives P(change) = sigmoid(change logit). Untrained, it is a plain
feature-distance detector.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsneo.heads.decoder import IGNORE, PixelDecoder
from rsneo.heads.features import ImageFeatures

CHANGE_NAMES = ("no change", "change")


@dataclass
class ChangeHeadConfig:
    """Sizes of the change head; saved in heads.json."""

    hidden_size: int
    dim: int = 32
    decoder_channels: int = 32
    full_channels: int = 24
    stem_channels: int = 16
    early_layer: int = 1
    init_scale: float = 200.0
    init_threshold: float = 0.01  # cosine distance above which a pixel counts as changed before training
    # calibrated combination with the radiometric change magnitude (fit on NAIP pairs by `fit_combination`):
    # change logit = head_weight * (P_head - 0.5) + magnitude_weight * magnitude excess + bias; with
    # magnitude_weight 0 (folders written before it) the head's own logit is used
    head_weight: float = 1.0
    magnitude_weight: float = 0.0
    bias: float = 0.0


class ChangeHead(nn.Module):
    """Two frames' features -> (no change, change) logits at full resolution."""

    def __init__(self, config: ChangeHeadConfig) -> None:
        super().__init__()
        self.config = config
        self.decoder = PixelDecoder.from_config(config)
        self.correction = nn.Conv2d(2 * config.dim, 1, 1)
        nn.init.zeros_(self.correction.weight)
        nn.init.zeros_(self.correction.bias)
        self.log_scale = nn.Parameter(torch.tensor(math.log(config.init_scale)))
        self.threshold = nn.Parameter(torch.tensor(config.init_threshold))

    def embeddings(self, features: ImageFeatures, frame: int) -> Tensor:
        """(B, dim, H, W) unit vectors of one frame."""
        out = self.decoder(
            features.last[:, frame], features.early[:, frame], features.pixels[:, frame], features.wavelengths
        )
        return F.normalize(out, dim=1)

    def forward(self, features: ImageFeatures, before: int = 0, after: int = -1) -> Tensor:
        """Logits (B, 2, H, W): channel 0 "no change" (always 0), channel 1 "change"."""
        frames = features.last.shape[1]
        a = self.embeddings(features, before % frames)  # (B, dim, H, W)
        b = self.embeddings(features, after % frames)
        distance = 1.0 - (a * b).sum(1, keepdim=True)  # (B, 1, H, W), 0 = identical
        change = self.log_scale.exp() * (distance - self.threshold) + self.correction(
            torch.cat([a - b, a * b], 1)
        )
        return torch.cat([torch.zeros_like(change), change], dim=1)

    @property
    def uses_magnitude(self) -> bool:
        return self.config.magnitude_weight != 0.0

    def combine(self, logits: Tensor, excess: Tensor) -> Tensor:
        """Head logits (B, 2, H, W) and the relative magnitude excess (B, 1, H, W) -> calibrated logits.

        Why both: the head is robust to misregistration and illumination but coarse; the magnitude is sharp
        but counts every radiometric difference. At head_weight 0 this is CVA + Otsu of the `blur`red
        magnitude.
        """
        c = self.config
        vote = torch.sigmoid(logits[:, 1:]) - 0.5  # bounded: an over-confident head on an unseen sensor
        change = c.head_weight * vote + c.magnitude_weight * excess.to(logits.dtype) + c.bias
        return torch.cat([logits[:, :1], change], dim=1)

    def magnitude_alone(self, excess: Tensor) -> Tensor:
        """The relative magnitude excess (B, 1, H, W) -> logits without the head's vote: change exactly where
        the blurred magnitude passes the scene's Otsu cut (CVA + Otsu), on the combination's own scale.

        Why: the vote was fit for the imagery the head was trained on; on other sensors it extrapolates, while
        the magnitude, standardised and cut per scene, makes no such assumption."""
        change = self.config.magnitude_weight * excess.float()
        return torch.cat([torch.zeros_like(change), change], dim=1)

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy; labels (B, H, W): 0 unchanged, 1 changed, -1 unknown (ignored)."""
        labels = labels.long()
        labels = torch.where((labels < 0) | (labels > 1), IGNORE, labels)  # no mask index: no host sync
        return F.cross_entropy(logits, labels, ignore_index=IGNORE)

    def to_json(self) -> dict:
        return asdict(self.config)


MAGNITUDE_SIGMA = 1.0  # pixels: the scale of misregistration and sensor blur, below any change worth mapping


def blur(magnitude: Tensor, sigma: float = MAGNITUDE_SIGMA, valid: Tensor | None = None) -> Tensor:
    """(B, 1, H, W) -> the same, smoothed by a Gaussian of `sigma` pixels (edges mirrored); with `valid`
    (B, 1, H, W), a mean over the valid pixels only (normalised convolution), so nodata and the padding of a
    window at the raster's edge do not leak into the pixels beside them.

    Why: a changed field is a region, while noise, speckle and one-pixel misregistration are isolated pixels;
    averaging over the sensor's own blur scale keeps the first and damps the second before the Otsu cut."""
    if sigma <= 0:
        return magnitude
    if valid is not None:
        weight = valid.to(magnitude.dtype)
        total, count = blur(magnitude * weight, sigma), blur(weight, sigma)
        return torch.where(count > 1e-6, total / count.clamp(min=1e-6), magnitude)
    radius = max(1, math.ceil(2 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=magnitude.dtype, device=magnitude.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    mode = "reflect" if min(magnitude.shape[-2:]) > radius else "replicate"
    out = F.pad(magnitude, (radius, radius, 0, 0), mode=mode)
    out = F.conv2d(out, kernel.view(1, 1, 1, -1))
    out = F.pad(out, (0, 0, radius, radius), mode=mode)
    return F.conv2d(out, kernel.view(1, 1, -1, 1))


def magnitude_excess(magnitude: Tensor, threshold: float | Tensor) -> Tensor:
    """Change-vector magnitude relative to the scene's Otsu cut: (m - T) / T, 0 at the cut, so that the same
    weight fits scenes of any contrast (T is the scene's, as CVA + Otsu takes it)."""
    threshold = torch.as_tensor(threshold, dtype=magnitude.dtype, device=magnitude.device).clamp(min=1e-6)
    return (magnitude - threshold) / threshold
