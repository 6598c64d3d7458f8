"""The mixed attention mask, once, for three kernels: dense SDPA, FlexAttention, flash-attn variable length.

Rule (NEO's, with rsneo's block ids): query q may attend key k when both are in the same document and either
k <= q (causal) or q and k carry the same non-negative block id (a bidirectional image block). Padding tokens
(doc id -1) attend only themselves, so no row is empty. The rule lives in `may_attend`; every backend uses it.

`flash_plan` decides whether a batch can run on flash-attn's variable-length kernel, which knows only whole
segments that are either causal or fully bidirectional: pure-text batches (each document one causal segment)
or
image-only batches where each document is one bidirectional block (pre-buffer self-supervision).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

BACKENDS = ("auto", "sdpa", "flex", "flash")
FLASH_MAX_HEAD_DIM = 256
FLEX_BLOCK = 128  # FlexAttention's tile: BlockMasks and its kernels work on 128 x 128 blocks


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


def flex_block_mask(doc_ids: Tensor, block_ids: Tensor, multiple: int = FLEX_BLOCK) -> Any:
    """A FlexAttention BlockMask for self-attention over the whole batch (no cache), built once per batch.

    The row is padded to a multiple of `multiple` (FlexAttention's 128-token tile, as NEO pads its packed
    rows) with padding tokens (doc id -1, which attend only themselves): the compiled kernel then sees one
    length per 128-token bucket and does not recompile for every packed length; `flex_attention` pads
    q/k/v to the mask's length and cuts the output back.
    """
    from torch.nn.attention.flex_attention import create_block_mask

    extra = -doc_ids.shape[1] % multiple
    if extra:
        doc_ids, block_ids = (torch.nn.functional.pad(t, (0, extra), value=-1) for t in (doc_ids, block_ids))

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return may_attend(
            doc_ids[b, q_idx], block_ids[b, q_idx], q_idx, doc_ids[b, kv_idx], block_ids[b, kv_idx], kv_idx
        )

    batch, length = doc_ids.shape
    return create_block_mask(mask_mod, batch, None, length, length, device=doc_ids.device)


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


def flash_available() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def run_varlen(plan: FlashPlan, q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """Attention per segment. q, k, v (batch, heads, tokens, dim) with KV heads already repeated.

    Uses flash-attn on CUDA when installed; elsewhere the same segments run through SDPA (the CPU reference
    the
    tests check the plan with). Padding tokens come back as zeros.
    """
    batch, heads, length, _ = q.shape
    dv = v.shape[-1]

    def flat(x: Tensor) -> Tensor:
        return x.transpose(1, 2).reshape(batch * length, heads, x.shape[-1])[plan.token_index]

    fq, fk, fv = flat(q), flat(k), flat(v)  # (valid, heads, dim)
    # flash-attn, and SDPA's fused kernels on CPU, need one head width for q, k and v: pad the values
    fv = torch.nn.functional.pad(fv, (0, fq.shape[-1] - dv))
    if flash_available() and q.is_cuda:
        from flash_attn import flash_attn_varlen_func

        out = flash_attn_varlen_func(
            fq, fk, fv, plan.cu_seqlens, plan.cu_seqlens, plan.max_seqlen, plan.max_seqlen,
            softmax_scale=scale, causal=plan.causal,
        )[..., :dv]  # fmt: skip
    else:
        pieces = []
        cu = plan.cu_seqlens.tolist()
        for start, end in zip(cu[:-1], cu[1:], strict=True):
            seg = [x[start:end].transpose(0, 1)[None] for x in (fq, fk, fv)]  # (1, heads, n, dim)
            o = torch.nn.functional.scaled_dot_product_attention(*seg, is_causal=plan.causal, scale=scale)
            pieces.append(o[0].transpose(0, 1)[..., :dv])
        out = torch.cat(pieces, dim=0)
    full = out.new_zeros(batch * length, heads, dv)
    full[plan.token_index] = out
    return full.view(batch, length, heads, dv).transpose(1, 2)
