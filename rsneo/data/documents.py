"""Documents: text and frames interleaved into token ids, with which tokens the language-model loss learns.

A frame becomes `<img>` + one `<IMG_CONTEXT>` per 32x32 pixels of each band group + `</img>`, as in NEO. Text
parts are tokenised without special tokens; `Prompt` text (questions, class prompts, date captions) carries no
loss, plain text and `Answer` text do. Positions and block ids are not computed here: `rsneo.model.positions`
is the one implementation of the index rule, applied when documents are packed (`rsneo.data.packing`, or
`image_documents` for the image-only documents of heads and prediction: one per sample, no text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rsneo.data.frames import BandLayout, Frame
from rsneo.model.inputs import ImageInput, ImageTokens, ModelInputs
from rsneo.model.positions import pack_documents
from rsneo.model.tokenizer import image_token_ids


def frame_ids(groups: Sequence[ImageInput], tokens: ImageTokens) -> list[int]:
    """The one rule for a frame's tokens: `<img>`, one `<IMG_CONTEXT>` per token of each group, `</img>`."""
    return [tokens.start] + [tokens.context] * sum(g.num_tokens for g in groups) + [tokens.end]


class Prompt(str):
    """Text the model reads but is not trained to produce (a question, a class prompt, a date caption)."""


class Answer(str):
    """Text the model is trained to produce (explicitly; plain `str` parts are trained on too by default)."""


@dataclass
class Document:
    """One document: token ids, its band groups in token order, which tokens are language-model targets."""

    ids: list[int] = field(default_factory=list)
    groups: list[ImageInput] = field(default_factory=list)
    learn: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


class DocumentBuilder:
    """Appends text and `<img>` frames to a `Document` with the tokenizer's ids."""

    def __init__(self, tokenizer: Any, tokens: ImageTokens | None = None) -> None:
        self.tokenizer = tokenizer
        self.tokens = tokens or image_token_ids(tokenizer)
        self.doc = Document()

    def text(self, text: str, learn: bool) -> DocumentBuilder:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        self.doc.ids += ids
        self.doc.learn += [learn] * len(ids)
        return self

    def frame(self, groups: Sequence[ImageInput]) -> DocumentBuilder:
        ids = frame_ids(groups, self.tokens)
        self.doc.ids += ids
        self.doc.learn += [False] * len(ids)
        self.doc.groups += list(groups)
        return self

    def end(self, eos: bool = True) -> Document:
        """The finished document; `eos` appends the end-of-text token (learned, so generation stops)."""
        if eos and self.tokenizer.eos_token_id is not None:
            self.doc.ids.append(self.tokenizer.eos_token_id)
            self.doc.learn.append(True)
        return self.doc


def build_document(
    parts: Sequence[str | Frame | Sequence[ImageInput]],
    tokenizer: Any,
    learn_text: bool = True,
    eos: bool = True,
) -> Document:
    """Interleave text and frames into one document.

    `parts`: `str` (learned when `learn_text`), `Prompt` (never learned), `Answer` (always learned), `Frame`
    (its caption, as a prompt, then its `<img>` block) or a list of band groups (one `<img>` block).
    """
    builder = DocumentBuilder(tokenizer)
    for part in parts:
        if isinstance(part, Prompt):
            builder.text(part, learn=False)
        elif isinstance(part, Answer):
            builder.text(part, learn=True)
        elif isinstance(part, str):
            builder.text(part, learn=learn_text)
        elif isinstance(part, Frame):
            if part.caption:
                builder.text(part.caption, learn=False)
            builder.frame(part.groups)
        else:
            builder.frame(list(part))
    return builder.end(eos)


def image_documents(
    frames: Sequence[Sequence[Sequence[ImageInput]]], tokens: Any, policy: str = "frame"
) -> ModelInputs:
    """Image-only documents, one per sample and row: `frames[b][t]` are the band groups of frame t of sample
    b, each frame laid out by `frame_ids`. `tokens` gives the image token ids (an `RSNeoConfig` or
    `ImageTokens`); with `policy="scene"` all frames of a sample see each other."""
    ids_of = ImageTokens.of(tokens)
    rows = []
    for sample in frames:
        ids = [i for frame in sample for i in frame_ids(frame, ids_of)]
        rows.append([(torch.tensor(ids), [g for frame in sample for g in frame])])
    return pack_documents(rows, tokens, policy)


def window_documents(
    layouts: Sequence[BandLayout], pixels: np.ndarray, valid: np.ndarray, config: Any, policy: str = "frame"
) -> ModelInputs:
    """Windows read by `RasterWindows` -> the model's inputs: one document per window, one frame per date.

    `pixels` (B, bands, S, S) for one raster (one layout) or (B, dates, bands, S, S) for aligned dates (a
    layout each); `valid` (B, S, S). `config` (an `RSNeoConfig`) gives the token size and image token ids;
    `policy="scene"` lets the dates of a window see each other. Training reads the same windows through
    `rsneo.data.frames.scene_frames` into the same inputs (tests/predict/test_one_path.py).
    """
    if pixels.ndim == 4:
        pixels = pixels[:, None]
    token = config.token_size
    frames = [
        [layout.images(sample[t], v, token) for t, layout in enumerate(layouts)]
        for sample, v in zip(pixels, valid, strict=True)
    ]
    return image_documents(frames, config, policy=policy)
