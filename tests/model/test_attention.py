"""`rsneo.model.attention`: SDPA on CPU runs its fused (flash) kernel (values padded to the q/k width, once
per forward in inference; results unchanged) with grouped-query heads shared natively; the layer equals an
eager reference of native attention with the spectral phase, its gates and masks do what they say.

`sdpa_kernel([FLASH_ATTENTION])` allows only the fused kernel, so a shape it refuses raises instead of
falling back to the math kernel that stores every head's score matrix.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from rsneo.model import attention as attention_module
from rsneo.model import text_positions
from rsneo.model.attention import AttentionMask, NativeAttention, sdpa
from rsneo.model.config import RSNeoConfig
from rsneo.model.masks import dense_mask, flex_block_mask
from rsneo.model.rope import NativeRopeTables, apply_rotary, inverse_frequencies

from .conftest import golden_inputs

FUSED = [SDPBackend.FLASH_ATTENTION]


def random_attention(dtype: torch.dtype):
    g = torch.Generator().manual_seed(0)
    q, k = (
        torch.randn(1, 4, 300, 40, generator=g).to(dtype),
        torch.randn(1, 2, 300, 40, generator=g).to(dtype),
    )
    v = torch.randn(1, 2, 300, 16, generator=g).to(dtype)  # two key/value heads for four query heads
    mask = (torch.rand(1, 1, 300, 300, generator=g) > 0.3) | torch.eye(300, dtype=torch.bool)
    return q, k, v, mask


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.filterwarnings("ignore:Flash attention requires", "ignore:Flash attention kernel not used")
def test_padded_values_select_the_fused_kernel_and_match_unpadded(dtype, atol):
    """fp32: measured 7e-7; bf16: outputs of |x| < 3 rounded to 2^-8 relative, a few ulps."""
    q, k, v, mask = random_attention(dtype)
    with sdpa_kernel([SDPBackend.MATH]):
        repeated = [t.float().repeat_interleave(2, dim=1) for t in (k, v)]  # GQA written out
        expected = F.scaled_dot_product_attention(q.float(), *repeated, attn_mask=mask, scale=0.25)
    with sdpa_kernel(FUSED):
        # unpadded, the fused kernel refuses the shapes
        with pytest.raises(RuntimeError, match="No available kernel"):
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.25, enable_gqa=True)
        try:
            out = sdpa(q, k, v, mask, 0.25)
        except RuntimeError as exc:  # ATEN_CPU_CAPABILITY=default on AVX-512 hardware: torch's bf16 flash
            if "pack_vnni2" not in str(exc):  # kernel asks the CPU, not the forced kernel set, and fails
                raise
            pytest.skip("torch's CPU bf16 flash kernel with ATEN_CPU_CAPABILITY below the CPU's AVX-512")
    assert out.shape == (1, 4, 300, 16) and out.dtype == dtype
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


def layer_and_inputs(seed: int = 0, tokens: int = 12, pairs: str = "all"):
    torch.manual_seed(seed)
    config = RSNeoConfig(name="tiny", spectral_pairs=pairs)  # hidden 64, 4 heads over 2 kv heads, head_dim 16
    layer = NativeAttention(config).eval()
    with torch.no_grad():  # every axis switched on: H/W norms off one, the spectral frequencies non-zero
        for norm in (layer.q_norm_h, layer.k_norm_w):
            norm.weight.uniform_(0.5, 1.5)
        layer.spectral_frequencies.uniform_(-1.0, 1.0)
    x = torch.randn(1, tokens, config.hidden_size)
    g = torch.Generator().manual_seed(seed + 1)
    positions = torch.stack(
        [
            torch.arange(tokens).float(),  # T
            torch.randint(0, 4, (tokens,), generator=g).float(),  # H
            torch.randint(0, 4, (tokens,), generator=g).float(),  # W
            torch.rand(tokens, generator=g) * 30,  # S: spectral coordinates are not integers
        ]
    )[:, None]  # (4, batch, tokens)
    return layer, x, positions


def rope_of(layer: NativeAttention, positions: torch.Tensor) -> NativeRopeTables:
    return NativeRopeTables.build(positions, layer.config)


def causal(tokens: int) -> AttentionMask:
    return AttentionMask("sdpa", dense=torch.ones(tokens, tokens, dtype=torch.bool).tril()[None, None])


def reference_tables(layer: NativeAttention, positions: torch.Tensor) -> dict[str, tuple]:
    """cos/sin per axis from the formula, in float64: angle of pair i = position x inv_freq_i + S x f_i."""
    c = layer.config
    freqs = layer.spectral_frequencies.detach().double()
    dims = {"t": (c.head_dim, c.rope_theta, 0), "h": (c.head_dim // 2, c.rope_theta_hw, 1)}
    dims["w"] = (c.head_dim // 2, c.rope_theta_hw, 2)
    sizes = {"all": ("t", "h", "w"), "t": ("t",), "hw": ("h", "w")}[c.spectral_pairs]
    tables, used = {}, 0
    for axis, (dim, base, row) in dims.items():
        angles = positions[row, 0].double()[:, None] * inverse_frequencies(dim, base).double()
        if axis in sizes:
            angles = angles + positions[3, 0].double()[:, None] * freqs[used : used + dim // 2]
            used += dim // 2
        emb = torch.cat((angles, angles), -1)[None]
        tables[axis] = (emb.cos(), emb.sin())
    return tables


def eager_reference(layer: NativeAttention, x: torch.Tensor, positions: torch.Tensor, allowed: torch.Tensor):
    """Per head, q and k are [T | H | W], each part normed then rotated on its own axis plus the spectral
    phase;
    values stay head_dim; scale 1/sqrt(head_dim); kv heads shared by groups of query heads (repeated here)."""
    c = layer.config
    hd, n = c.head_dim, x.shape[1]
    tables = reference_tables(layer, positions)

    def heads(t: torch.Tensor, count: int) -> torch.Tensor:  # (1, n, count*d) -> (1, count, n, d)
        return t.view(1, n, count, -1).transpose(1, 2).double()

    def rotate(t: torch.Tensor, axis: str) -> torch.Tensor:
        cos, sin = tables[axis]
        return apply_rotary(t, cos, sin)

    def qk(kind: str, count: int) -> torch.Tensor:
        norm = lambda name: getattr(layer, f"{kind}_norm{name}")
        t = rotate(norm("")(heads(getattr(layer, f"{kind}_proj")(x), count).float()).double(), "t")
        hw = heads(getattr(layer, f"{kind}_proj_hw")(x), count).float()
        h = rotate(norm("_h")(hw[..., : hd // 2]).double(), "h")
        w = rotate(norm("_w")(hw[..., hd // 2 :]).double(), "w")
        return torch.cat([t, h, w], -1)

    q, k = qk("q", c.num_heads), qk("k", c.num_kv_heads)
    v = heads(layer.v_proj(x), c.num_kv_heads)
    group = c.num_heads // c.num_kv_heads
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)  # (1, heads, n, n)
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    out = (weights @ v).transpose(1, 2).reshape(1, n, c.num_heads * hd)
    return layer.o_proj(out.float())


@pytest.mark.parametrize("pairs", ["all", "t", "hw"])
def test_layer_equals_an_eager_reference_of_native_attention(pairs):
    """fp32 layer against a float64 reference of the formula: measured 3e-7 (fp32 rounding, outputs ~0.9)."""
    layer, x, positions = layer_and_inputs(pairs=pairs)
    mask = causal(x.shape[1])
    with torch.no_grad():
        out, (k, v) = layer(x, rope_of(layer, positions), mask)
        expected = eager_reference(layer, x, positions, mask.dense)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    assert k.shape == (1, 2, 12, 16 + 16) and v.shape == (1, 2, 12, 16)  # kv heads, [T|H|W] / head_dim


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
    """k_proj_hw at zero and the spectral frequencies at zero: the plain Qwen3 layer, whatever H, W, S say."""
    layer, x, positions = layer_and_inputs(seed=1)
    with torch.no_grad():
        layer.k_proj_hw.weight.zero_()
        layer.spectral_frequencies.zero_()
        moved = positions.clone()
        moved[1:] = moved[1:] * 3 + 1  # other H, W and S coordinates, same T
        a, _ = layer(x, rope_of(layer, positions), causal(12))
        b, _ = layer(x, rope_of(layer, moved), causal(12))
        assert torch.equal(a, b)  # every angle is exactly the T angle: S and H/W terms are exactly 0
        layer.spectral_frequencies.fill_(1e-3)  # a small step on the frequencies: S starts to matter
        c, _ = layer(x, rope_of(layer, positions), causal(12))
        d, _ = layer(x, rope_of(layer, moved), causal(12))
    assert not torch.allclose(c, d, rtol=0, atol=1e-7)
    assert (c - a).abs().max() < 0.1 * a.abs().max()  # ...and the output moves by about the step, no jump


def test_scores_depend_on_the_spectral_difference_only():
    """Shifting every S by the same amount changes nothing (the phase is relative, like T/H/W)."""
    layer, x, positions = layer_and_inputs(seed=4)
    shifted = positions.clone()
    shifted[3] += 17.5
    with torch.no_grad():
        a, _ = layer(x, rope_of(layer, positions), causal(12))
        b, _ = layer(x, rope_of(layer, shifted), causal(12))
        spread = positions.clone()
        spread[3] *= 2
        c, _ = layer(x, rope_of(layer, spread), causal(12))
    torch.testing.assert_close(a, b, rtol=0, atol=2e-5)  # fp32 angles up to ~50 rad: a few ulps of them
    assert (a - c).abs().max() > 1e-3


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


# ---- values padded once per forward, grouped-query heads shared natively ---------------------------------


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-5), (torch.bfloat16, 0.05)])
def test_inference_pads_values_once_per_forward_and_changes_nothing(dtype, atol, golden_model, golden_cases,
                                                                    golden_config, monkeypatch):  # fmt: skip
    """Without gradients every layer writes its values into one zero-padded buffer (no F.pad per layer); with
    gradients each layer pads its own. Same logits: fp32 measured 0 (the same kernel on the same numbers);
    bf16 the two runs round alike, 0.05 is 8 ulps of the largest logit (~1.6)."""
    model = golden_model.to(dtype)
    inputs = golden_inputs(golden_cases, "packed", golden_config, dtype)
    pads = []
    real_pad = attention_module.F.pad
    monkeypatch.setattr(attention_module.F, "pad", lambda *a, **k: pads.append(1) or real_pad(*a, **k))
    with torch.no_grad():
        mask = model.backbone.attention_mask(inputs, "sdpa", dtype=dtype)
        assert mask.padded_values is not None and mask.padded_values.shape[-1] == golden_config.qk_dim
        once = model(inputs, attn_backend="sdpa").logits
    assert not pads  # no layer padded its values
    every_layer = model(inputs, attn_backend="sdpa").logits.detach()  # with gradients: padded per layer
    assert len(pads) == golden_config.num_layers
    assert once.dtype == dtype
    torch.testing.assert_close(once.float(), every_layer.float(), rtol=0, atol=atol)


def test_grouped_query_heads_are_never_repeated_on_the_cpu(
    golden_model, golden_cases, golden_config, monkeypatch
):
    """The key/value heads go to SDPA as they are (`enable_gqa`), not copied per query head."""
    seen = []
    real = attention_module.F.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):
        seen.append((q.shape[1], k.shape[1], v.shape[1], kwargs.get("enable_gqa")))
        return real(q, k, v, **kwargs)

    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention", spy)
    with torch.no_grad():
        logits = golden_model(golden_inputs(golden_cases, "packed", golden_config)).logits[0]
    heads, kv = golden_config.num_heads, golden_config.num_kv_heads
    assert kv < heads and seen == [(heads, kv, kv, True)] * golden_config.num_layers
    torch.testing.assert_close(logits, golden_cases["packed.logits"], rtol=0, atol=1e-4)
