"""The mixed attention mask, once, for three kernels: dense SDPA, FlexAttention, variable-length flash.

Rule (NEO's, with rsneo's block ids): query q may attend key k when both are in the same document and either
k <= q (causal) or q and k carry the same non-negative block id (a bidirectional image block). Padding tokens
(doc id -1) attend only themselves, so no row is empty. The rule lives in `may_attend`; every backend uses it.

`flash_plan` decides whether a batch can run on a variable-length flash kernel (`rsneo.model.varlen`), which
knows only whole segments that are either causal or fully bidirectional: pure-text batches (each document one
causal segment) or image-only batches where each document is one bidirectional block (pre-buffer
self-supervision).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rsneo.model.flex import FlexBuckets

BACKENDS = ("auto", "sdpa", "flex", "flash")
FLASH_MAX_HEAD_DIM = 256  # the widest query/key head flash kernels (flash-attn, torch's varlen) take


def may_attend(
    q_doc: Tensor, q_block: Tensor, q_idx: Tensor, k_doc: Tensor, k_block: Tensor, k_idx: Tensor
) -> Tensor:
    """Elementwise mask rule; arguments broadcast against each other."""
    same_doc = (q_doc == k_doc) & (q_doc >= 0)
    same_block = (q_block == k_block) & (q_block >= 0)
    return (same_doc & ((k_idx <= q_idx) | same_block)) | (q_idx == k_idx)


def dense_mask(q_doc: Tensor, q_block: Tensor, k_doc: Tensor, k_block: Tensor, q_offset: int = 0) -> Tensor:
    """(batch, 1, queries, keys) bool; queries are the key sequence's last tokens, from `q_offset` on."""
    q_idx = torch.arange(q_doc.shape[1], device=q_doc.device) + q_offset
    k_idx = torch.arange(k_doc.shape[1], device=k_doc.device)
    allowed = may_attend(
        q_doc[:, :, None],
        q_block[:, :, None],
        q_idx[None, :, None],
        k_doc[:, None, :],
        k_block[:, None, :],
        k_idx,
    )
    return allowed[:, None]


def flex_block_mask(doc_ids: Tensor, block_ids: Tensor, buckets: FlexBuckets | None = None) -> Any:
    """A FlexAttention BlockMask for self-attention over the whole batch (no cache), built once per batch.

    The batch is padded up to its bucket of `buckets` (`rsneo.model.flex`: rows and tokens per row) with
    padding tokens (doc id -1, which attend only themselves), so compiled Flex meets a bounded set of shapes;
    `flex_attention` pads q/k/v to the mask's shape and cuts the output back.
    """
    from torch.nn.attention.flex_attention import create_block_mask

    rows, length = (buckets or FlexBuckets()).shape(*doc_ids.shape)
    extra_rows, extra_tokens = rows - doc_ids.shape[0], length - doc_ids.shape[1]
    if extra_rows or extra_tokens:
        pad = (0, extra_tokens, 0, extra_rows)
        doc_ids, block_ids = (torch.nn.functional.pad(t, pad, value=-1) for t in (doc_ids, block_ids))

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return may_attend(
            doc_ids[b, q_idx], block_ids[b, q_idx], q_idx, doc_ids[b, kv_idx], block_ids[b, kv_idx], kv_idx
        )

    return create_block_mask(mask_mod, rows, None, length, length, device=doc_ids.device)


@dataclass
class FlashPlan:
    """A batch as variable-length segments: gather `token_index`, attend per segment, scatter back."""

    causal: bool
    token_index: Tensor  # (valid tokens,) indexes into the flattened (batch * tokens)
    cu_seqlens: Tensor  # (segments + 1,) int32
    max_seqlen: int


def flash_plan(doc_ids: Tensor, block_ids: Tensor, qk_dim: int = 0) -> FlashPlan | None:
    """A plan when the mask is document-blocked (all text, or every document one image block), else None."""
    if qk_dim > FLASH_MAX_HEAD_DIM:
        return None
    valid = doc_ids >= 0
    if not bool(valid.any()):
        return None
    image = block_ids >= 0
    if not bool(image[valid].any()):
        causal = True
    elif bool(image[valid].all()):
        causal = False
    else:
        return None
    flat_doc = doc_ids.flatten()
    flat_block = block_ids.flatten()
    row = torch.arange(doc_ids.shape[0], device=doc_ids.device).repeat_interleave(doc_ids.shape[1])
    token_index = valid.flatten().nonzero().squeeze(1)
    # a segment starts where the row or the document changes (between valid tokens)
    seg_row, seg_doc, seg_block = row[token_index], flat_doc[token_index], flat_block[token_index]
    starts = torch.ones_like(token_index, dtype=torch.bool)
    starts[1:] = (seg_row[1:] != seg_row[:-1]) | (seg_doc[1:] != seg_doc[:-1])
    if not causal:
        # every document must be exactly one block, or the segment is not fully bidirectional
        inner = ~starts
        if bool((seg_block[1:][inner[1:]] != seg_block[:-1][inner[1:]]).any()):
            return None
    # gaps (padding inside a row) would join segments: split on index jumps too
    starts[1:] |= token_index[1:] != token_index[:-1] + 1
    bounds = torch.cat((starts.nonzero().squeeze(1), torch.tensor([len(token_index)], device=doc_ids.device)))
    lengths = bounds[1:] - bounds[:-1]
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32, device=doc_ids.device)
    cu[1:] = lengths.cumsum(0)
    return FlashPlan(causal, token_index, cu, int(lengths.max()))
