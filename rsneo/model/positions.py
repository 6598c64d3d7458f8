"""The one implementation of Native-RoPE indexes (T, H, W, S) and bidirectional block ids.

NEO's rule, per document (documents restart at 0): T advances by one for every token that is not an image
token,
and by one at the first image token after `<img>`, so all tokens of one frame share a single T and `</img>`
takes
the next T. H and W are the token's row and column in its band group's 32-pixel grid (0 for text). S is the
band
group's spectral coordinate (`rsneo.model.spectral.spectral_coordinate`, 0 for text).

rsneo extends this with band groups (several `ImageInput`s, one after another, between one `<img>`/`</img>`
pair
share the frame's T), optional date-spaced T (`date_spacing` T units per day are added between consecutive
frames), and two mask policies expressed as block ids: `frame` gives each `<img>` block its own id (NEO),
`scene`
gives all image tokens of a document one id, so the frames of a scene see each other.

Example (NEO golden `single` case: 3 text tokens, one 64x96 RGB image = 2x3 tokens, 4 text tokens)::

    ids = torch.tensor([1, 2, 3, 500] + [502] * 6 + [501, 4, 5, 6, 7])
    rgb = ImageInput(pixels, wavelengths=torch.tensor([0.665, 0.56, 0.49]), band_keys=("red", "green",
    "blue"))
    doc = document_positions(ids, [rgb], config)       # config: RSNeoConfig or ImageTokens
    doc.positions[0]  # T: 0 1 2 3 4 4 4 4 4 4 5 6 7 8 9
    doc.positions[1]  # H: 0 0 0 0 0 0 0 1 1 1 0 0 0 0 0
    doc.positions[2]  # W: 0 0 0 0 0 1 2 0 1 2 0 0 0 0 0
    doc.block_ids     # -1 -1 -1 -1 0 0 0 0 0 0 -1 -1 -1 -1 -1

`pack_documents` lays several documents into rows and returns a `ModelInputs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rsneo.errors import InputError
from rsneo.model.inputs import ImageInput, ImageTokens, ModelInputs
from rsneo.model.spectral import spectral_coordinate

MASK_POLICIES = ("frame", "scene")


@dataclass
class DocumentPositions:
    positions: Tensor  # (4, L) float: T, H, W, S
    block_ids: Tensor  # (L,) long, -1 for tokens that are not image tokens


def group_coordinate(image: ImageInput) -> float:
    return spectral_coordinate(image.wavelengths.tolist(), image.band_keys)


def document_positions(
    input_ids: Tensor,
    images: Sequence[ImageInput],
    tokens: Any,
    policy: str | None = None,
    date_spacing: float | None = None,
) -> DocumentPositions:
    """Positions (4, L) and block ids (L,) of one document whose `<IMG_CONTEXT>` tokens `images` fill.

    `images` are the document's band groups in token order; a frame (`<img>` block) holds one or more groups,
    assigned by token count. `tokens` gives the image token ids (`RSNeoConfig` or `ImageTokens`); when it is
    an `RSNeoConfig`, `policy` and `date_spacing` default to its `mask_policy` and `date_spacing` (0 = frames
    consecutive).
    """
    policy = policy if policy is not None else getattr(tokens, "mask_policy", "frame")
    date_spacing = date_spacing if date_spacing is not None else getattr(tokens, "date_spacing", None)
    if policy not in MASK_POLICIES:
        raise InputError(f"mask policy: expected one of {MASK_POLICIES}, got {policy!r}")
    ids = ImageTokens.of(tokens)
    seq = input_ids.tolist()
    length = len(seq)
    pos = torch.zeros(4, length, dtype=torch.float64)
    block = torch.full((length,), -1, dtype=torch.long)
    t = 0.0
    group_index = 0
    frame = -1
    previous_time: float | None = None
    i = 0
    while i < length:
        if seq[i] != ids.context:
            pos[0, i] = t
            t += 1.0
            i += 1
            continue
        # an image block: the run of context tokens, filled group after group
        run_end = i
        while run_end < length and seq[run_end] == ids.context:
            run_end += 1
        frame += 1
        frame_groups: list[ImageInput] = []
        need = run_end - i
        while need > 0:
            if group_index >= len(images):
                raise InputError(
                    f"document: {run_end - i} <IMG_CONTEXT> tokens at position {i} but only "
                    f"{len(images)} band groups were given"
                )
            group = images[group_index]
            group_index += 1
            frame_groups.append(group)
            need -= group.num_tokens
        if need < 0:
            raise InputError(
                f"document: the image block at position {i} has {run_end - i} <IMG_CONTEXT> tokens, "
                f"its band groups need {run_end - i - need}"
            )
        if date_spacing is not None:
            now = frame_groups[0].time
            if now is None:
                raise InputError("date-spaced T: every frame needs ImageInput.time (days), found None")
            if previous_time is not None:
                if now < previous_time:
                    raise InputError(
                        f"date-spaced T: frames must be in time order, found {now} after {previous_time}"
                    )
                t += (now - previous_time) * date_spacing
            previous_time = now
        j = i
        for group in frame_groups:
            rows, cols = group.grid
            n = rows * cols
            pos[0, j : j + n] = t
            pos[1, j : j + n] = torch.arange(rows, dtype=torch.float64).repeat_interleave(cols)
            pos[2, j : j + n] = torch.arange(cols, dtype=torch.float64).repeat(rows)
            pos[3, j : j + n] = group_coordinate(group)
            j += n
        block[i:run_end] = frame if policy == "frame" else 0
        t += 1.0
        i = run_end
    if group_index != len(images):
        raise InputError(
            f"document: {len(images)} band groups given but its <IMG_CONTEXT> tokens use only {group_index}"
        )
    return DocumentPositions(pos.float(), block)


def text_positions(input_ids: Tensor) -> ModelInputs:
    """`ModelInputs` for plain text (batch, tokens): one document per row, T = 0..L-1, H = W = S = 0."""
    batch, length = input_ids.shape
    positions = torch.zeros(4, batch, length, device=input_ids.device)
    positions[0] = torch.arange(length, device=input_ids.device, dtype=torch.float32)
    return ModelInputs(
        input_ids=input_ids,
        positions=positions,
        doc_ids=torch.zeros_like(input_ids),
        block_ids=torch.full_like(input_ids, -1),
    )


def pack_documents(
    rows: Sequence[Sequence[tuple[Tensor, Sequence[ImageInput]]]],
    tokens: Any,
    policy: str | None = None,
    date_spacing: float | None = None,
    pad_id: int = 0,
) -> ModelInputs:
    """Pack rows of documents `(input_ids (L,), band groups)` into one right-padded `ModelInputs` batch.

    `policy` / `date_spacing` as in `document_positions`.
    """
    lengths = [sum(len(ids) for ids, _ in row) for row in rows]
    width = max(lengths)
    batch = len(rows)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    positions = torch.zeros(4, batch, width)
    doc_ids = torch.full((batch, width), -1, dtype=torch.long)
    block_ids = torch.full((batch, width), -1, dtype=torch.long)
    images: list[ImageInput] = []
    for r, row in enumerate(rows):
        start = 0
        for d, (ids, groups) in enumerate(row):
            doc = document_positions(ids, groups, tokens, policy, date_spacing)
            end = start + len(ids)
            input_ids[r, start:end] = ids
            positions[:, r, start:end] = doc.positions
            doc_ids[r, start:end] = d
            block_ids[r, start:end] = doc.block_ids
            images.extend(groups)
            start = end
    return ModelInputs(input_ids, positions, doc_ids, block_ids, images)
