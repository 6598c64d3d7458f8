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

`inputs` is a `ModelInputs` of one-frame image documents (`image_documents` builds one per window).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsneo.model.inputs import ImageInput, ModelInputs
from rsneo.model.positions import ImageTokens, pack_documents, text_positions

IGNORE = -1


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


class SpectralStem(nn.Module):
    """Per-pixel features of any band set: a 1x1 conv with per-band kernels made from wavelengths (DOFA)."""

    def __init__(self, channels: int, frequencies: int = 8) -> None:
        super().__init__()
        self.register_buffer("freqs", 2.0 ** torch.arange(frequencies, dtype=torch.float32), persistent=False)
        self.kernel = nn.Sequential(nn.Linear(2 * frequencies + 1, 64), nn.GELU(), nn.Linear(64, channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, pixels: Tensor, wavelengths: Tensor) -> Tensor:
        # pixels (B, bands, H, W), wavelengths (bands,) micrometres -> (B, channels, H, W)
        # the Fourier code in float32 (fine wavelength differences), then the head's own dtype (bf16 models)
        x = torch.log(wavelengths.float().clamp(min=1e-3)).unsqueeze(-1) * self.freqs  # (bands, F)
        code = torch.cat([torch.sin(x), torch.cos(x), x[:, :1] / self.freqs[0]], dim=-1)  # (bands, 2F+1)
        weight = self.kernel(code.to(self.bias.dtype)) / math.sqrt(pixels.shape[1])  # (bands, channels)
        pixels = pixels.to(weight.dtype)
        return F.gelu(torch.einsum("bchw,cd->bdhw", pixels, weight) + self.bias[:, None, None])


@dataclass
class ImageFeatures:
    """What the heads need from one backbone pass over image documents (one frame each, or several frames)."""

    last: Tensor  # (B, frames, hidden, rows, cols) final hidden state at each 32x32 location
    early: Tensor  # (B, frames, hidden, rows, cols) hidden state of the early layer
    pixels: Tensor  # (B, frames, bands, H, W) the normalised pixels of each frame
    wavelengths: Tensor  # (bands,) micrometres


class PixelDecoder(nn.Module):
    """Token grid (1/32) -> full-resolution pixel embeddings, guided by the per-pixel stem.

    Spatial context is mixed at 1/8 resolution (3x3 conv). The first full-resolution layer is linear in
    [upsampled tokens, stem], and bilinear upsampling commutes with a 1x1 conv, so the token part is projected
    before upsampling; at full resolution only two narrow per-pixel layers run, so large rasters stay cheap.
    """

    def __init__(
        self, hidden_size: int, channels: int, stem_channels: int, dim: int, full_channels: int
    ) -> None:
        super().__init__()
        self.tokens = nn.Conv2d(2 * hidden_size, channels, 1)
        self.up = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GELU())
        self.to_full = nn.Conv2d(channels, full_channels, 1)
        self.stem = SpectralStem(stem_channels)
        self.stem_to_full = nn.Conv2d(stem_channels, full_channels, 1, bias=False)
        self.out = nn.Conv2d(full_channels, dim, 1)

    @classmethod
    def from_config(cls, config: Any) -> PixelDecoder:
        """From a segmentation or change head config (both carry the decoder's sizes under these names)."""
        c = config
        return cls(c.hidden_size, c.decoder_channels, c.stem_channels, c.dim, c.full_channels)

    def context(self, last: Tensor, early: Tensor) -> Tensor:
        """Token features mixed spatially at 1/8 resolution: (N, hidden, rows, cols) -> (N, c, 4r, 4c)."""
        x = self.tokens(torch.cat([last, early], dim=1))  # (N, c, rows, cols)
        return self.up(F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False))

    def fuse(self, projected: Tensor, pixels: Tensor, wavelengths: Tensor) -> Tensor:
        """The per-pixel layers: `to_full` of the upsampled context (N, f, ...) with the stem of the pixels
        (N, bands, ...) -> (N, dim, ...). Any spatial layout works (`rsneo learn` passes labelled pixels)."""
        return self.out(F.gelu(projected + self.stem_to_full(self.stem(pixels, wavelengths))))

    def forward(self, last: Tensor, early: Tensor, pixels: Tensor, wavelengths: Tensor) -> Tensor:
        # last, early (N, hidden, rows, cols); pixels (N, bands, H, W) -> (N, dim, H, W)
        x = self.to_full(self.context(last, early))  # (N, f, 4r, 4c): projected before upsampling, 1/64 work
        x = F.interpolate(x, size=pixels.shape[-2:], mode="bilinear", align_corners=False)  # (N, f, H, W)
        return self.fuse(x, pixels, wavelengths)  # (N, dim, H, W)


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
        out = self.decoder(
            features.last[:, frame], features.early[:, frame], features.pixels[:, frame], features.wavelengths
        )
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


# ---- backbone glue: prompts and image documents -> hidden states -------------------------------------------


def backbone_states(model: nn.Module, inputs: ModelInputs) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Last hidden state (B, L, hidden) and all hidden states (embeddings, then every layer's output)."""
    out = model.backbone(inputs, output_hidden_states=True)
    if isinstance(out, tuple):
        return out[0], tuple(out[1])
    return out.last_hidden_state, tuple(out.hidden_states)


def class_prompt_ids(tokenizer, names: list[str], config: SegmentationHeadConfig) -> list[list[int]]:
    """The token ids of each class name's prompt (`prompt_template`), no special tokens."""
    prompts = [config.prompt_template.format(name.strip()) for name in names]
    return [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]


def encode_class_prompts(
    model: nn.Module, tokenizer, names: list[str], config: SegmentationHeadConfig
) -> Tensor:
    """(K, hidden): each class prompt's last-token final hidden state."""
    device = next(model.parameters()).device
    encoded = class_prompt_ids(tokenizer, names, config)
    width = max(len(ids) for ids in encoded)
    ids = torch.zeros(len(encoded), width, dtype=torch.long)
    last = torch.tensor([len(e) - 1 for e in encoded])
    for i, e in enumerate(encoded):
        ids[i, : len(e)] = torch.tensor(e)  # right padding: causal attention keeps it out of earlier tokens
    hidden, _ = backbone_states(model, text_positions(ids.to(device)))  # (K, L, hidden)
    return hidden[torch.arange(len(encoded), device=device), last.to(device)]


def image_document(frames: list[list[ImageInput]], tokens) -> tuple[Tensor, list[ImageInput]]:
    """One sample's document `(ids, band groups)`: each frame is `<img>` + its groups' tokens + `</img>`."""
    ids_of = ImageTokens.of(tokens)
    ids: list[int] = []
    groups: list[ImageInput] = []
    for frame in frames:
        ids += [ids_of.start] + [ids_of.context] * sum(g.num_tokens for g in frame) + [ids_of.end]
        groups += frame
    return torch.tensor(ids), groups


def image_documents(frames: list[list[list[ImageInput]]], tokens, policy: str = "frame") -> ModelInputs:
    """One document per sample and row (`image_document`).

    `frames[b][t]` are the band groups of frame t of sample b. `tokens` gives the image token ids (an
    `RSNeoConfig`). With `policy="scene"` all frames of a sample see each other.
    """
    return pack_documents([[image_document(sample, tokens)] for sample in frames], tokens, policy)


def frame_pixels(images: list[ImageInput], samples: int, frames: int) -> tuple[Tensor, Tensor]:
    """The normalised pixels (samples, frames, bands, H, W) of image documents' band groups (`images` in
    document order, every frame the same groups), and the wavelengths (bands,) of one frame."""
    per_frame = len(images) // (samples * frames)
    stacked = [
        torch.cat([g.pixels for g in images[i : i + per_frame]])  # (bands, H, W)
        for i in range(0, len(images), per_frame)
    ]
    pixels = torch.stack(stacked).view(samples, frames, *stacked[0].shape)
    return pixels, torch.cat([g.wavelengths for g in images[:per_frame]])


def gather_features(
    last: Tensor,
    early: Tensor,
    rows: Tensor,
    cols: Tensor,
    grid: tuple[int, int],
    pixels: Tensor,
    wavelengths: Tensor,
) -> ImageFeatures:
    """`ImageFeatures` read from one backbone pass at the image tokens (`rows`, `cols`): every sample's
    tokens, frame after frame, band group after group, row-major; several groups of a frame are averaged per
    location. `pixels` (samples, frames, bands, H, W). Indexing by positions known in advance keeps every
    shape fixed: no device read, so the training step can share this with inference."""
    samples, frames = pixels.shape[:2]
    per_group = grid[0] * grid[1]

    def gather(states: Tensor) -> Tensor:
        # (rows, tokens, hidden) -> (samples, frames, hidden, rows, cols)
        picked = states[rows, cols].view(samples, frames, -1, per_group, states.shape[-1]).mean(2)
        return picked.view(samples, frames, *grid, -1).permute(0, 1, 4, 2, 3)

    return ImageFeatures(gather(last), gather(early), pixels, wavelengths)


def image_features(
    model: nn.Module,
    inputs: ModelInputs,
    early_layer: int,
    frames: int = 1,
) -> ImageFeatures:
    """Per-location features of every frame of every sample in `inputs` (built by `image_documents`).

    All frames share one grid and one band set. Several band groups of a frame are averaged per location.
    """
    last, hidden_states = backbone_states(model, inputs)
    rows, cols = torch.nonzero(inputs.input_ids == model.config.img_context_token_id, as_tuple=True)
    pixels, wavelengths = frame_pixels(inputs.images, inputs.input_ids.shape[0], frames)
    return gather_features(
        last, hidden_states[early_layer], rows, cols, inputs.images[0].grid,
        pixels.to(last.device), wavelengths.to(last.device),
    )  # fmt: skip
