"""Greedy generation for prompts that mix images and text, with a key/value cache.

The prompt (images included) runs once; its keys and values are cached, so the band groups are embedded once.
Each new token continues the last document of its row: T = the row's last T + 1, H = W = S = 0, causal.
Rows must end on a real token (left-pad prompts of different lengths: padding has doc id -1).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rsneo.errors import InputError
from rsneo.model.inputs import ModelInputs
from rsneo.model.kv_cache import KVCache
from rsneo.model.positions import text_positions


def _step_inputs(token: Tensor, last_t: Tensor, doc: Tensor) -> ModelInputs:
    """One new token per row (batch, 1) continuing document `doc` at T = last_t + 1."""
    positions = torch.zeros(4, token.shape[0], 1, device=token.device)
    positions[0, :, 0] = last_t + 1
    return ModelInputs(token, positions, doc[:, None].clone(), torch.full_like(token, -1))


def _append(inputs: ModelInputs, step: ModelInputs) -> ModelInputs:
    cat = lambda a, b: torch.cat((a, b), dim=-1)
    return ModelInputs(
        cat(inputs.input_ids, step.input_ids), cat(inputs.positions, step.positions),
        cat(inputs.doc_ids, step.doc_ids), cat(inputs.block_ids, step.block_ids), inputs.images,
    )  # fmt: skip


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    inputs: ModelInputs | Tensor,
    max_new_tokens: int = 32,
    eos_token_id: int | None = None,
    use_cache: bool = True,
    attn_backend: str | None = None,  # None: model.config.attn_backend
) -> Tensor:
    """Greedy continuation (batch, new tokens) of each row; rows that produced `eos_token_id` repeat it."""
    if isinstance(inputs, Tensor):
        inputs = text_positions(inputs)
    inputs = ModelInputs(inputs.input_ids, inputs.positions, inputs.doc_ids, inputs.block_ids, inputs.images)
    if bool((inputs.doc_ids[:, -1] < 0).any()):
        raise InputError("generate: every row must end on a prompt token; left-pad rows of different lengths")
    eos = eos_token_id if eos_token_id is not None else model.config.eos_token_id
    doc = inputs.doc_ids[:, -1]
    last_t = inputs.positions[0, :, -1]
    cache = KVCache(inputs.input_ids.shape[1] + max_new_tokens) if use_cache else None  # allocated once
    logits = model(inputs, cache=cache, attn_backend=attn_backend).logits[:, -1]
    done = torch.zeros(doc.shape[0], dtype=torch.bool, device=doc.device)
    out = []
    for _ in range(max_new_tokens):
        token = logits.argmax(-1)
        if eos is not None:
            token = torch.where(done, torch.full_like(token, eos), token)
            done |= token == eos
        out.append(token)
        if eos is not None and bool(done.all()):
            break
        step = _step_inputs(token[:, None], last_t, doc)
        last_t = last_t + 1
        if use_cache:
            logits = model(step, cache=cache, attn_backend=attn_backend).logits[:, -1]
        else:
            inputs = _append(inputs, step)
            logits = model(inputs, attn_backend=attn_backend).logits[:, -1]
    return torch.stack(out, dim=1)
