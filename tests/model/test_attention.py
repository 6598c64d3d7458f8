"""SDPA on CPU runs its fused (flash) kernel: values are padded to the q/k width, and results do not change.

`sdpa_kernel([FLASH_ATTENTION])` allows only the fused kernel, so a shape it refuses raises instead of
falling back to the math kernel that stores every head's score matrix.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from rsneo.model import text_positions
from rsneo.model.attention import sdpa

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
