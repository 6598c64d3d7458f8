"""A training step in two halves: the host plans, the device computes.

The plan (`plan_step`, on CPU tensors, before the batch moves to the device) makes every data-dependent
choice of the step: which band groups or patches are hidden, which tokens have a next-token target, where
each image token and class prompt ends up, the simulated change pairs. The device half
(`RSNeoTraining.step_losses`) then only gathers at those positions: no `.item()`, no `bool(tensor)`, no
boolean index (a `nonzero`), whose data-dependent results an accelerator must finish all queued work to
hand back (a host sync per read).

One backbone pass: the training rows (with their hidden pixels zeroed), the labelled chips, the change pairs
and the class prompts are documents of one packed batch. Documents never see each other (the mask is per
document, padding attends only itself), so every objective reads from the pass exactly the states that a pass
of its own would give: final states for reconstruction, the LM and the class prompts, the head's early layer
(`hidden_states`) for the chips and pairs. What cannot share a row is the same image masked and whole: when a
chip is also its document's image, it appears twice, hidden pixels zeroed in the training row (reconstruction
must not see them) and whole in its chip row (segmentation must) -- two rows of the same pass, not two passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rsneo.data.packing import concat_rows, pack_rows, repack
from rsneo.heads.class_words import draw_class_names
from rsneo.heads.features import class_prompt_ids, frame_pixels
from rsneo.model.inputs import ModelInputs
from rsneo.model.masks import flash_plan
from rsneo.model.positions import pack_documents
from rsneo.train.batch import TrainBatch
from rsneo.train.change import change_batch
from rsneo.train.masking import MaskedTargets, apply_mask, choose_mask, image_token_slots, masked_targets
from rsneo.train.objectives import lm_targets


@dataclass
class HeadTargets:
    """A dense head's share of the pass: its samples' image tokens (`rows`, `cols`: sample after sample,
    frame after frame, group after group, row-major), their pixels and labels; for segmentation also the
    last token of each class prompt (`prompt_rows`, `prompt_cols`)."""

    rows: Tensor  # (tokens,) long
    cols: Tensor  # (tokens,) long
    grid: tuple[int, int]
    pixels: Tensor  # (samples, frames, bands, H, W)
    wavelengths: Tensor  # (bands,)
    labels: Tensor  # (samples, H, W) long
    prompt_rows: Tensor | None = None  # (classes,) long
    prompt_cols: Tensor | None = None

    def to(self, device: torch.device | str) -> HeadTargets:
        move = lambda t: None if t is None else t.to(device)
        return HeadTargets(
            move(self.rows), move(self.cols), self.grid, move(self.pixels), move(self.wavelengths),
            move(self.labels), move(self.prompt_rows), move(self.prompt_cols),
        )  # fmt: skip


@dataclass
class StepBatch:
    """One step as planned on the host: the one packed input of the backbone pass (training rows first, then
    chips, change pairs and class prompts) and each objective's positions and targets in it."""

    inputs: ModelInputs
    size: int  # training rows (the batch size the losses are logged with)
    masked: MaskedTargets | None = None
    lm: tuple[Tensor, Tensor, Tensor] | None = None  # rows, cols, next-token targets
    segmentation: HeadTargets | None = None
    change: HeadTargets | None = None
    # document-blocked (`document_blocked`): the backbone may pick flash-attn's variable-length kernel, whose
    # plan reads the ids on the device; a training step's mixed rows never are, and get flex / SDPA directly
    flash: bool = False

    def to(self, device: torch.device | str) -> StepBatch:
        return StepBatch(
            self.inputs.to(device),
            self.size,
            self.masked.to(device) if self.masked is not None else None,
            tuple(t.to(device) for t in self.lm) if self.lm is not None else None,
            self.segmentation.to(device) if self.segmentation is not None else None,
            self.change.to(device) if self.change is not None else None,
            self.flash,
        )


def packed_images(
    inputs: ModelInputs, context_id: int, width: int, row_offset: int, pad_id: int
) -> tuple[ModelInputs, Tensor, Tensor]:
    """Image documents (one per row, as `image_documents` builds them) repacked several to a row of at most
    `width` tokens, and the (rows, cols) of their `<IMG_CONTEXT>` tokens, document after document, row-major
    inside each, for a part that starts at row `row_offset` of the pass."""
    packed, where = repack(inputs, context_id, width, pad_id)
    rows, cols = [], []
    for r, start, length in where:
        picked = (packed.input_ids[r, start : start + length] == context_id).nonzero().flatten()
        rows.append(torch.full_like(picked, r + row_offset))
        cols.append(picked + start)
    return packed, torch.cat(rows), torch.cat(cols)


def prompt_rows(prompts: list[list[int]], width: int, tokens: Any) -> tuple[ModelInputs, Tensor, Tensor]:
    """The class prompts packed as text documents into rows of at most `width` tokens (a short prompt per
    padded row would waste most of the row), and the (row, column) of each prompt's last token."""
    rows = pack_rows([len(p) for p in prompts], width)
    last_row, last_col = [0] * len(prompts), [0] * len(prompts)
    for r, row in enumerate(rows):
        start = 0
        for i in row:
            start += len(prompts[i])
            last_row[i], last_col[i] = r, start - 1
    inputs = pack_documents([[(torch.tensor(prompts[i]), []) for i in row] for row in rows], tokens)
    return inputs, torch.tensor(last_row), torch.tensor(last_col)


def plan_step(
    batch: TrainBatch,
    config: Any,
    generator: torch.Generator,
    *,
    mask_ratio: float | None,
    lm: bool,
    segmentation: Any = None,
    tokenizer: Any = None,
    change_pairs: int = 0,
    pad_id: int = 0,
) -> StepBatch:
    """Plan one step of `batch` (CPU tensors) for the model `config` (`RSNeoConfig`).

    `mask_ratio`: masked band-group reconstruction (None: off); `lm`: language modelling; `segmentation`:
    the segmentation head's config (None: off), whose prompts `tokenizer` encodes; `change_pairs`: simulated
    pairs per change source (0: off). The generator is drawn in the order of the separate-pass step (masks,
    class names, then pairs), so a seed gives the same draws as before.
    """
    inputs = batch.inputs
    context_id = config.img_context_token_id
    mask = None
    if mask_ratio is not None and inputs.images:
        mask = choose_mask(inputs, context_id, mask_ratio, generator)
    seen = apply_mask(inputs, mask) if mask is not None else inputs
    parts, offset = [seen], inputs.input_ids.shape[0]
    step = StepBatch(inputs=seen, size=inputs.input_ids.shape[0])
    if mask is not None and mask.num_hidden > 0:
        step.masked = masked_targets(inputs.images, mask, image_token_slots(inputs, context_id))
    if lm and inputs.labels is not None:
        step.lm = lm_targets(inputs.labels)
    width = inputs.input_ids.shape[1]
    seg = batch.segmentation
    if segmentation is not None and seg is not None:
        chips = seg.inputs
        pixels, wavelengths = frame_pixels(chips.images, chips.input_ids.shape[0], 1)
        packed, rows, cols = packed_images(
            chips, context_id, max(width, chips.input_ids.shape[1]), offset, pad_id
        )
        parts.append(packed)
        offset += packed.input_ids.shape[0]
        # each class named by itself or one of its other names, drawn per step (`rsneo.heads.class_words`)
        names = draw_class_names(list(seg.class_names), generator)
        prompts = class_prompt_ids(tokenizer, names, segmentation)
        text, last_row, last_col = prompt_rows(prompts, max(width, *map(len, prompts)), config)
        parts.append(text)
        step.segmentation = HeadTargets(
            rows, cols, chips.images[0].grid, pixels, wavelengths, seg.labels, last_row + offset, last_col
        )
        offset += text.input_ids.shape[0]
    if change_pairs > 0 and batch.change:
        pairs = change_batch(list(batch.change) * change_pairs, generator, config)
        if pairs is not None:
            scenes = pairs.inputs
            pixels, wavelengths = frame_pixels(scenes.images, scenes.input_ids.shape[0], 2)
            packed, rows, cols = packed_images(
                scenes, context_id, max(width, scenes.input_ids.shape[1]), offset, pad_id
            )
            parts.append(packed)
            step.change = HeadTargets(
                rows, cols, pairs.inputs.images[0].grid, pixels, wavelengths, pairs.labels
            )
    step.inputs = concat_rows(parts, pad_id)
    step.flash = document_blocked(step.inputs, config)
    return step


def document_blocked(inputs: ModelInputs, config: Any) -> bool:
    """Whether flash-attn's variable-length kernel could run the batch, decided on the host so that the
    backbone need not test the ids on the device (a host sync) to find out. Image and text rows together, as
    a training step packs them, are never document-blocked."""
    return flash_plan(inputs.doc_ids, inputs.block_ids, config.qk_dim) is not None
