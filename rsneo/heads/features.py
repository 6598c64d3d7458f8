"""What the heads read from one backbone pass: per-location image features and class-prompt vectors.

The heads never run the backbone themselves. Image documents (`rsneo.data.documents.image_documents`, one
per sample, one `<img>` block per frame) go through `image_features`, which runs the backbone once and
gathers, at every image token, the final and an early layer's hidden states into `ImageFeatures` on the
token grid, with the normalised pixels the decoders refine them with. Class names go through
`encode_class_prompts`: each name's prompt is run as text and its last token's final state is the class
vector. Training shares `gather_features` with inference, with positions planned on the host
(`rsneo.train.step`), so both read the same states. The backbone itself (`rsneo.model`) knows no heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from rsneo.model.inputs import ImageInput, ModelInputs
from rsneo.model.positions import text_positions


class PromptConfig(Protocol):
    """Anything that says how a class name becomes a prompt (a segmentation head's config)."""

    prompt_template: str


@dataclass
class ImageFeatures:
    """What the heads need from one backbone pass over image documents (one frame each, or several frames)."""

    last: Tensor  # (B, frames, hidden, rows, cols) final hidden state at each 32x32 location
    early: Tensor  # (B, frames, hidden, rows, cols) hidden state of the early layer
    pixels: Tensor  # (B, frames, bands, H, W) the normalised pixels of each frame
    wavelengths: Tensor  # (bands,) micrometres
    band_keys: tuple[str, ...] = ()  # (bands,) common names / polarisations ("" where none); () if unknown


def backbone_states(model: nn.Module, inputs: ModelInputs) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Last hidden state (B, L, hidden) and all hidden states (embeddings, then every layer's output)."""
    out = model.backbone(inputs, output_hidden_states=True)
    if isinstance(out, tuple):
        return out[0], tuple(out[1])
    return out.last_hidden_state, tuple(out.hidden_states)


def class_prompt_ids(tokenizer: Any, names: list[str], config: PromptConfig) -> list[list[int]]:
    """The token ids of each class name's prompt (`prompt_template`), no special tokens."""
    prompts = [config.prompt_template.format(name.strip()) for name in names]
    return [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]


def encode_class_prompts(model: nn.Module, tokenizer: Any, names: list[str], config: PromptConfig) -> Tensor:
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


def frame_pixels(images: list[ImageInput], samples: int, frames: int) -> tuple[Tensor, Tensor]:
    """The normalised pixels (samples, frames, bands, H, W) of image documents' band groups (`images` in
    document order, every frame the same groups), and the wavelengths (bands,) of one frame."""
    per_frame = groups_per_frame(images, samples, frames)
    stacked = [
        torch.cat([g.pixels for g in images[i : i + per_frame]])  # (bands, H, W)
        for i in range(0, len(images), per_frame)
    ]
    pixels = torch.stack(stacked).view(samples, frames, *stacked[0].shape)
    return pixels, torch.cat([g.wavelengths for g in images[:per_frame]])


def groups_per_frame(images: list[ImageInput], samples: int, frames: int) -> int:
    return len(images) // (samples * frames)


def frame_band_keys(images: list[ImageInput], samples: int, frames: int) -> tuple[str, ...]:
    """The band keys (bands,) of one frame, in `frame_pixels`' band order."""
    return tuple(k for g in images[: groups_per_frame(images, samples, frames)] for k in g.band_keys)


def gather_features(
    last: Tensor,
    early: Tensor,
    rows: Tensor,
    cols: Tensor,
    grid: tuple[int, int],
    pixels: Tensor,
    wavelengths: Tensor,
    band_keys: tuple[str, ...] = (),
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

    return ImageFeatures(gather(last), gather(early), pixels, wavelengths, band_keys)


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
    samples = inputs.input_ids.shape[0]
    pixels, wavelengths = frame_pixels(inputs.images, samples, frames)
    return gather_features(
        last, hidden_states[early_layer], rows, cols, inputs.images[0].grid,
        pixels.to(last.device), wavelengths.to(last.device), frame_band_keys(inputs.images, samples, frames),
    )  # fmt: skip
