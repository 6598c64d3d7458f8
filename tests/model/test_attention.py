"""`rsneo.model.attention`: SDPA on CPU runs its fused (flash) kernel (values padded to the q/k width, results
unchanged); the layer equals an eager reference of native attention, its gates and masks do what they say.

`sdpa_kernel([FLASH_ATTENTION])` allows only the fused kernel, so a shape it refuses raises instead of
falling back to the math kernel that stores every head's score matrix.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from rsneo.model import text_positions
from rsneo.model.attention import AttentionMask, NativeAttention, sdpa
from rsneo.model.config import RSNeoConfig
from rsneo.model.masks import dense_mask, flex_block_mask
from rsneo.model.rope import NativeRopeTables, apply_rotary

from .conftest import golden_inputs

FUSED = [SDPBackend.FLASH_ATTENTION]


def random_attention(dtype: torch.dtype):
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(1, 4, 300, 40, generator=g).to(dtype) for _ in range(2))
    v = torch.randn(1, 4, 300, 16, generator=g).to(dtype)
    mask = (torch.rand(1, 1, 300, 300, generator=g) > 0.3) | torch.eye(300, dtype=torch.bool)
    return q, k, v, mask


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.filterwarnings("ignore:Flash attention requires", "ignore:Flash attention kernel not used")
def test_padded_values_select_the_fused_kernel_and_match_unpadded(dtype, atol):
    """fp32: measured 7e-7; bf16: outputs of |x| < 3 rounded to 2^-8 relative, a few ulps."""
    q, k, v, mask = random_attention(dtype)
    with sdpa_kernel([SDPBackend.MATH]):
        expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask, scale=0.25)
    with sdpa_kernel(FUSED):
        # unpadded, the fused kernel refuses the shapes
        with pytest.raises(RuntimeError, match="No available kernel"):
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.25)
        out = sdpa(q, k, v, mask, 0.25)
    assert out.shape == v.shape and out.dtype == dtype
    torch.testing.assert_close(out.float(), expected, rtol=0, atol=atol)


@pytest.mark.parametrize("backend", ["sdpa", "flash"])
def test_the_whole_model_runs_on_the_fused_kernel(backend, golden_model, golden_cases, golden_config):
    inputs = {"packed": golden_inputs(golden_cases, "packed", golden_config), "text": text_positions(
        torch.tensor([[5, 17, 200, 31, 99, 42, 7, 250]]))}  # fmt: skip
    with torch.no_grad():
        reference = golden_model(inputs["text"], attn_backend=backend).logits
    with sdpa_kernel(FUSED):
        with torch.no_grad():
            logits = golden_model(inputs["packed"], attn_backend=backend).logits[0]
            text = golden_model(inputs["text"], attn_backend=backend).logits  # flash: the varlen plan
        golden_model(inputs["packed"], attn_backend=backend).logits.sum().backward()
    torch.testing.assert_close(logits, golden_cases["packed.logits"], rtol=0, atol=1e-4)
    torch.testing.assert_close(text, reference, rtol=0, atol=1e-5)
    assert golden_model.backbone.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


# ---- the layer itself: an eager reference written from the module docstring, the gates, the masks ----------


def layer_and_inputs(seed: int = 0, tokens: int = 12):
    torch.manual_seed(seed)
    config = RSNeoConfig(name="tiny")  # hidden 64, 4 heads over 2 kv heads, head_dim 16, spectral 8
    layer = NativeAttention(config).eval()
    with torch.no_grad():  # every axis switched on: H/W projections and the S gate non-zero
        for norm in (layer.q_norm_s, layer.k_norm_s, layer.q_norm_h, layer.k_norm_w):
            norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(1, tokens, config.hidden_size)
    g = torch.Generator().manual_seed(seed + 1)
    positions = torch.stack(
        [
            torch.arange(tokens).float(),  # T
            torch.randint(0, 4, (tokens,), generator=g).float(),  # H
            torch.randint(0, 4, (tokens,), generator=g).float(),  # W
            torch.rand(tokens, generator=g) * 3,  # S: spectral coordinates are not integers
        ]
    )[:, None]  # (4, batch, tokens)
    return layer, x, positions


def rope_of(layer: NativeAttention, positions: torch.Tensor) -> NativeRopeTables:
    c = layer.config
    return NativeRopeTables.build(
        positions, c.head_dim, c.spectral_head_dim, c.rope_theta, c.rope_theta_hw, c.rope_theta_s
    )


def causal(tokens: int) -> AttentionMask:
    return AttentionMask("sdpa", dense=torch.ones(tokens, tokens, dtype=torch.bool).tril()[None, None])


def eager_reference(layer: NativeAttention, x: torch.Tensor, rope: NativeRopeTables, allowed: torch.Tensor):
    """Per head, q and k are [T | H | W | S], each part normed then rotated on its own axis; values stay
    head_dim; scale 1/sqrt(head_dim); kv heads shared by groups of query heads."""
    c = layer.config
    hd, n = c.head_dim, x.shape[1]

    def heads(t: torch.Tensor, count: int) -> torch.Tensor:  # (1, n, count*d) -> (1, count, n, d)
        return t.view(1, n, count, -1).transpose(1, 2)

    def qk(kind: str, count: int) -> torch.Tensor:
        norm = lambda name: getattr(layer, f"{kind}_norm{name}")
        t = apply_rotary(norm("")(heads(getattr(layer, f"{kind}_proj")(x), count)), *rope.t)
        hw = heads(getattr(layer, f"{kind}_proj_hw")(x), count)
        h = apply_rotary(norm("_h")(hw[..., : hd // 2]), *rope.h)
        w = apply_rotary(norm("_w")(hw[..., hd // 2 :]), *rope.w)
        s = apply_rotary(norm("_s")(heads(getattr(layer, f"{kind}_proj_s")(x), count)), *rope.s)
        return torch.cat([t, h, w, s], -1)

    q, k = qk("q", c.num_heads), qk("k", c.num_kv_heads)
    v = heads(layer.v_proj(x), c.num_kv_heads)
    group = c.num_heads // c.num_kv_heads
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)  # (1, heads, n, n)
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    out = (weights @ v).transpose(1, 2).reshape(1, n, c.num_heads * hd)
    return layer.o_proj(out)


def test_layer_equals_an_eager_reference_of_native_attention():
    """fp32 on both sides; the fused kernel sums in another order: measured 3e-7."""
    layer, x, positions = layer_and_inputs()
    rope = rope_of(layer, positions)
    mask = causal(x.shape[1])
    with torch.no_grad():
        out, (k, v) = layer(x, rope, mask)
        expected = eager_reference(layer, x, rope, mask.dense)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    assert k.shape == (1, 2, 12, 16 + 16 + 8) and v.shape == (1, 2, 12, 16)  # kv heads, [T|H|W|S] / head_dim


def test_flex_backend_equals_sdpa_on_the_same_mask():
    layer, x, positions = layer_and_inputs(seed=3, tokens=20)
    rope = rope_of(layer, positions)
    doc = torch.tensor([[0] * 8 + [1] * 12])
    block = torch.tensor([[-1] * 3 + [0] * 5 + [-1] * 2 + [1] * 6 + [-1] * 4])  # an image block per document
    dense = AttentionMask("sdpa", dense=dense_mask(doc, block, doc, block))
    flex = AttentionMask("flex", block_mask=flex_block_mask(doc, block))
    with torch.no_grad():
        a, _ = layer(x, rope, dense)
        b, _ = layer(x, rope, flex)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)  # fp32, two kernels' summation orders


def test_with_the_gates_shut_hw_and_s_positions_change_nothing():
    """k_proj_hw at zero and the S gate (k_norm_s) at zero: the plain Qwen3 layer, whatever H, W, S say."""
    layer, x, positions = layer_and_inputs(seed=1)
    with torch.no_grad():
        layer.k_proj_hw.weight.zero_()
        layer.k_norm_s.weight.zero_()
        moved = positions.clone()
        moved[1:] = moved[1:] * 3 + 1  # other H, W and S coordinates, same T
        a, _ = layer(x, rope_of(layer, positions), causal(12))
        b, _ = layer(x, rope_of(layer, moved), causal(12))
        assert torch.equal(a, b)  # the H/W/S terms of every score are exactly 0
        layer.k_norm_s.weight.fill_(1e-2)  # a small step on the S gate: S coordinates start to matter
        c, _ = layer(x, rope_of(layer, positions), causal(12))
        d, _ = layer(x, rope_of(layer, moved), causal(12))
    assert not torch.allclose(c, d, rtol=0, atol=1e-7)
    assert (c - a).abs().max() < 0.1 * a.abs().max()  # ...and the output moves by about the step, no jump


def test_a_query_never_sees_a_key_its_mask_forbids():
    layer, x, positions = layer_and_inputs(seed=2)
    rope = rope_of(layer, positions)
    changed = x.clone()
    changed[:, 7:] += torch.randn_like(changed[:, 7:])  # rewrite the later tokens
    with torch.no_grad():
        a, _ = layer(x, rope, causal(12))
        b, _ = layer(changed, rope, causal(12))
    torch.testing.assert_close(a[:, :7], b[:, :7], rtol=0, atol=1e-6)  # causal: the first 7 cannot see them
    assert not torch.allclose(a[:, 7:], b[:, 7:])
