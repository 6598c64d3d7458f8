"""The preallocated KV cache: written in place, the same numbers as concatenation, the same step mask."""

from __future__ import annotations

import torch

from rsneo.model import RSNeoConfig, RSNeoForCausalLM, pack_documents
from rsneo.model.generate import _step_inputs
from rsneo.model.kv_cache import KVCache
from rsneo.model.masks import dense_mask

from .conftest import rgb


def test_update_equals_concatenation_and_grows_past_capacity():
    torch.manual_seed(0)
    cache = KVCache(capacity=5)
    parts = [torch.randn(2, 3, n, 4) for n in (3, 1, 1, 2)]  # the last call overflows the capacity
    for part in parts:
        keys, values = cache.update(0, part, -part)
        cache.key_ids(torch.zeros(2, part.shape[2], dtype=torch.long), torch.full((2, part.shape[2]), -1))
        cache.extend(part.shape[2])
    reference = torch.cat(parts, dim=2)
    assert torch.equal(keys, reference) and torch.equal(values, -reference)
    assert torch.equal(cache.layers[0][0], reference) and cache.length == 7
    assert cache.keys[0].shape[2] >= 7 and cache.doc_ids.shape == (2, 7)


def test_generation_writes_in_place_without_reallocating():
    torch.manual_seed(0)
    model = RSNeoForCausalLM(RSNeoConfig.from_preset("tiny")).eval()
    prompt = torch.tensor([[11, 12, 13, 14]])
    cache = KVCache(capacity=4 + 3)
    with torch.no_grad():
        model(input_ids=prompt, cache=cache)
        buffers = [k.data_ptr() for k in cache.keys]
        last_t, doc = torch.tensor([3.0]), torch.zeros(1, dtype=torch.long)
        for step in range(3):
            token = torch.tensor([[20 + step]])  # text tokens (a random model's argmax may be an image id)
            model(_step_inputs(token, last_t + step, doc), cache=cache)
    assert cache.length == 7
    assert [k.data_ptr() for k in cache.keys] == buffers  # no copy of the past per step


def test_step_mask_equals_the_dense_rule():
    """For one new token per row the cached mask is the full rule of `may_attend` (documents, padding)."""
    cfg = RSNeoConfig.from_preset("tiny")
    s, e, c = cfg.img_start_token_id, cfg.img_end_token_id, cfg.img_context_token_id
    image_doc = (torch.tensor([1, s, c, c, e, 5]), [rgb(torch.randn(3, 32, 64))])
    batch = pack_documents([[(torch.tensor([7, 8]), []), image_doc], [(torch.tensor([9, 8, 7]), [])]], cfg)
    cache = KVCache()
    cache.key_ids(batch.doc_ids, batch.block_ids)
    cache.extend(batch.doc_ids.shape[1])
    new_doc = torch.tensor([[1], [-1]])  # row 0 continues its second document; row 1 is padding
    new_block = torch.full((2, 1), -1)
    k_doc, k_block = cache.key_ids(new_doc, new_block)
    expected = dense_mask(new_doc, new_block, k_doc, k_block, cache.length)
    assert torch.equal(cache.step_mask(new_doc), expected)
    assert expected[0, 0, 0].tolist() == [False] * 2 + [True] * 7  # only the continued document, and itself
