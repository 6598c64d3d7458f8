"""Packing documents into rows of at most `max_tokens`, collating rows into `ModelInputs`, and back.

Documents never see each other (the model masks by `doc_ids`), so several short documents share a row instead
of padding. Rows are filled first-fit in the given order; a document longer than `max_tokens` is an error (cut
scenes into tiles first). Positions and block ids come from `rsneo.model.positions.pack_documents`, the one
implementation of NEO's index rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rsneo.data.documents import Document
from rsneo.errors import InputError
from rsneo.model.inputs import ImageInput, ModelInputs
from rsneo.model.positions import pack_documents


def pack_rows(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """First-fit: document indexes per row, each row's total length at most `max_tokens`."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i, length in enumerate(lengths):
        if length > max_tokens:
            raise InputError(f"document {i}: {length} tokens, expected at most max_tokens={max_tokens}")
        for r, space in enumerate(free):
            if length <= space:
                rows[r].append(i)
                free[r] -= length
                break
        else:
            rows.append([i])
            free.append(max_tokens - length)
    return rows


def next_token_labels(input_ids: Tensor, doc_ids: Tensor, learn: Tensor) -> Tensor:
    """Next-token targets (batch, tokens): labels[t] = input_ids[t + 1] where token t + 1 is in the same
    document and is learned, else -100 (so no document is trained to predict the next one's first token)."""
    labels = torch.full_like(input_ids, -100)
    same_doc = (doc_ids[:, 1:] == doc_ids[:, :-1]) & (doc_ids[:, 1:] >= 0)
    keep = same_doc & learn[:, 1:]
    labels[:, :-1] = torch.where(keep, input_ids[:, 1:], labels[:, :-1])
    return labels


def collate_rows(
    rows: Sequence[Sequence[Document]],
    tokens: Any,
    pad_id: int = 0,
    policy: str = "frame",
    date_spacing: float | None = None,
) -> ModelInputs:
    """Rows of documents -> one right-padded `ModelInputs` batch with next-token `labels`.

    `tokens`: the image token ids (`ImageTokens` or an `RSNeoConfig`); `policy`: `frame` or `scene` mask.
    """
    packed = [[(torch.tensor(d.ids, dtype=torch.long), d.groups) for d in row] for row in rows]
    inputs = pack_documents(packed, tokens, policy=policy, date_spacing=date_spacing, pad_id=pad_id)
    learn = torch.zeros_like(inputs.input_ids, dtype=torch.bool)
    for r, row in enumerate(rows):
        flags = [f for d in row for f in d.learn]
        learn[r, : len(flags)] = torch.tensor(flags, dtype=torch.bool)
    inputs.labels = next_token_labels(inputs.input_ids, inputs.doc_ids, learn)
    return inputs


def pack_batches(
    docs: Sequence[Document],
    max_tokens: int,
    tokens: Any,
    rows_per_batch: int = 1,
    pad_id: int = 0,
    policy: str = "frame",
    date_spacing: float | None = None,
) -> list[ModelInputs]:
    """Pack documents into rows of at most `max_tokens`; collate `rows_per_batch` rows per `ModelInputs`."""
    rows = [[docs[i] for i in row] for row in pack_rows([len(d) for d in docs], max_tokens)]
    return [
        collate_rows(rows[i : i + rows_per_batch], tokens, pad_id, policy, date_spacing)
        for i in range(0, len(rows), rows_per_batch)
    ]


@dataclass
class UnpackedDocument:
    """One document cut back out of a packed batch."""

    ids: Tensor  # (L,) long
    positions: Tensor  # (4, L) float: T, H, W, S
    block_ids: Tensor  # (L,) long
    groups: list[ImageInput]
    labels: Tensor | None  # (L,) long


def unpack(inputs: ModelInputs, image_context_id: int) -> list[UnpackedDocument]:
    """Every document of a packed batch, row by row, left to right, with its own band groups."""
    out = []
    image = 0
    for r in range(inputs.input_ids.shape[0]):
        doc_ids = inputs.doc_ids[r]
        for d in doc_ids[doc_ids >= 0].unique_consecutive().tolist():
            at = (doc_ids == d).nonzero().flatten()
            sl = slice(int(at[0]), int(at[-1]) + 1)
            ids = inputs.input_ids[r, sl]
            need = int((ids == image_context_id).sum())
            groups = []
            while need > 0:
                groups.append(inputs.images[image])
                need -= inputs.images[image].num_tokens
                image += 1
            labels = None if inputs.labels is None else inputs.labels[r, sl]
            out.append(
                UnpackedDocument(ids, inputs.positions[:, r, sl], inputs.block_ids[r, sl], groups, labels)
            )
    return out


def concat_rows(parts: Sequence[ModelInputs], pad_id: int = 0) -> ModelInputs:
    """The rows of several batches as one batch, right-padded to the widest (padding: doc id -1, which
    attends only itself), images in row order; `labels` are dropped (the parts' targets are gathered by
    position instead). Each part keeps its own mask policy: its block ids are taken as they are."""
    width = max(p.input_ids.shape[1] for p in parts)

    def pad(t: Tensor, value: float) -> Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[-1]), value=value)

    return ModelInputs(
        input_ids=torch.cat([pad(p.input_ids, pad_id) for p in parts]),
        positions=torch.cat([pad(p.positions, 0.0) for p in parts], dim=1),
        doc_ids=torch.cat([pad(p.doc_ids, -1) for p in parts]),
        block_ids=torch.cat([pad(p.block_ids, -1) for p in parts]),
        images=[im for p in parts for im in p.images],
    )


def repack(
    inputs: ModelInputs, image_context_id: int, max_tokens: int, pad_id: int = 0
) -> tuple[ModelInputs, list[tuple[int, int, int]]]:
    """The documents of `inputs` packed anew, first-fit, into rows of at most `max_tokens` (several short
    documents to a row instead of a padded row each), positions and block ids kept as they were; with each
    document's (row, first column, length) in the new batch, in the documents' original order."""
    docs = unpack(inputs, image_context_id)
    rows = pack_rows([len(d.ids) for d in docs], max_tokens)
    width = max(sum(len(docs[i].ids) for i in row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    positions = torch.zeros(4, len(rows), width)
    doc_ids = torch.full((len(rows), width), -1, dtype=torch.long)
    block_ids = torch.full((len(rows), width), -1, dtype=torch.long)
    images: list[ImageInput] = []
    where = [(0, 0, 0)] * len(docs)
    for r, row in enumerate(rows):
        start = 0
        for d, i in enumerate(row):
            doc = docs[i]
            end = start + len(doc.ids)
            input_ids[r, start:end] = doc.ids
            positions[:, r, start:end] = doc.positions
            doc_ids[r, start:end] = d
            block_ids[r, start:end] = doc.block_ids
            images.extend(doc.groups)
            where[i] = (r, start, len(doc.ids))
            start = end
    return ModelInputs(input_ids, positions, doc_ids, block_ids, images), where
