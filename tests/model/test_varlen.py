"""Variable-length flash attention: which kernel runs where, and that each is called with the right packed
shapes. The CUDA kernels cannot run here; their calls are checked on the CPU against stand-ins that compute
the same attention per segment (and check every argument a flash kernel relies on)."""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn.functional as F

from rsneo.model import varlen
from rsneo.model.masks import dense_mask, flash_plan
from rsneo.model.varlen import run_varlen, varlen_kernel

CUDA = torch.device("cuda")  # a device object only: nothing is allocated on it


def test_the_kernel_follows_device_dtype_width_and_what_is_installed(monkeypatch):
    monkeypatch.setattr(varlen, "flash_attn_installed", lambda: True)
    assert varlen_kernel(CUDA, torch.bfloat16, 256) == "flash-attn"
    monkeypatch.setattr(varlen, "flash_attn_installed", lambda: False)
    assert varlen.torch_varlen_available()  # torch 2.14 ships it
    assert varlen_kernel(CUDA, torch.bfloat16, 256) == "torch varlen"
    assert varlen_kernel(CUDA, torch.float16, 128) == "torch varlen"
    assert varlen_kernel(CUDA, torch.float32, 256) == "sdpa per segment"  # flash kernels take 16-bit only
    assert varlen_kernel(CUDA, torch.bfloat16, 320) == "sdpa per segment"  # wider than flash's 256
    assert varlen_kernel(torch.device("cpu"), torch.bfloat16, 256) == "sdpa per segment"


def packed_case(causal: bool):
    """Two rows, three documents (one ends in padding), 4 query heads over 2 key/value heads, v narrower."""
    torch.manual_seed(0)
    doc = torch.tensor([[0, 0, 0, 1, 1, -1], [0, 0, 0, 0, 0, 0]])
    block = torch.full_like(doc, -1) if causal else torch.where(doc >= 0, doc, -1)
    q, k, v = torch.randn(2, 4, 6, 32), torch.randn(2, 2, 6, 32), torch.randn(2, 2, 6, 16)
    expected = F.scaled_dot_product_attention(
        q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), attn_mask=dense_mask(doc, block, doc, block)
    )
    return doc, block, (q, k, v), expected


def per_segment(q, k, v, cu, causal, scale):
    """What a varlen kernel computes, from packed (tokens, heads, dim) tensors and offsets."""
    out = []
    bounds = cu.tolist()
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        seg = [x[start:end].transpose(0, 1)[None] for x in (q, k, v)]
        o = F.scaled_dot_product_attention(*seg, is_causal=causal, scale=scale, enable_gqa=True)
        out.append(o[0].transpose(0, 1))
    return torch.cat(out)


@pytest.mark.parametrize("causal", [True, False])
def test_torch_varlen_gets_packed_tokens_offsets_window_and_grouped_heads(causal, monkeypatch):
    import torch.nn.attention.varlen as module

    doc, block, (q, k, v), expected = packed_case(causal)
    plan = flash_plan(doc, block, qk_dim=32)
    calls = []

    def stand_in(fq, fk, fv, cu_q, cu_k, max_q, max_k, *, scale, window_size, enable_gqa):
        calls.append(1)
        assert fq.shape == (11, 4, 32) and fk.shape == fv.shape == (11, 2, 32)  # values padded to q/k width
        assert cu_q.dtype == torch.int32 and cu_q.tolist() == cu_k.tolist() == plan.cu_seqlens.tolist()
        assert max_q == max_k == plan.max_seqlen and enable_gqa
        assert window_size == ((-1, 0) if causal else (-1, -1))  # (-1, 0) is torch's causal
        return per_segment(fq, fk, fv, cu_q, window_size == (-1, 0), scale)

    monkeypatch.setattr(module, "varlen_attn", stand_in)
    out = run_varlen(plan, q, k, v, 1 / 32**0.5, kernel="torch varlen")
    assert calls and out.shape == (2, 4, 6, 16)
    valid = doc >= 0
    torch.testing.assert_close(out.transpose(1, 2)[valid], expected.transpose(1, 2)[valid], rtol=0, atol=1e-6)
    assert not out.transpose(1, 2)[~valid].any()  # padding comes back as zeros


@pytest.mark.parametrize("causal", [True, False])
def test_flash_attn_gets_the_same_packed_call(causal, monkeypatch):
    doc, block, (q, k, v), expected = packed_case(causal)
    plan = flash_plan(doc, block, qk_dim=32)

    def flash_attn_varlen_func(fq, fk, fv, cu_q, cu_k, max_q, max_k, softmax_scale, causal):
        assert fq.shape[-1] == fk.shape[-1] == fv.shape[-1] == 32 and fk.shape[1] == 2
        assert cu_q.tolist() == plan.cu_seqlens.tolist() and max_q == plan.max_seqlen
        return per_segment(fq, fk, fv, cu_q, causal, softmax_scale)

    monkeypatch.setitem(
        sys.modules, "flash_attn", types.SimpleNamespace(flash_attn_varlen_func=flash_attn_varlen_func)
    )
    out = run_varlen(plan, q, k, v, 1 / 32**0.5, kernel="flash-attn")
    valid = doc >= 0
    torch.testing.assert_close(out.transpose(1, 2)[valid], expected.transpose(1, 2)[valid], rtol=0, atol=1e-6)


def test_the_cpu_reference_runs_sdpa_per_segment():
    doc, block, (q, k, v), expected = packed_case(causal=True)
    out = run_varlen(flash_plan(doc, block), q, k, v, 1 / 32**0.5)
    valid = doc >= 0
    torch.testing.assert_close(out.transpose(1, 2)[valid], expected.transpose(1, 2)[valid], rtol=0, atol=1e-6)
