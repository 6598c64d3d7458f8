"""Compiled FlexAttention does not recompile per packed length; one block mask serves every layer.

Rows are padded to a multiple of 128 (FlexAttention's tile) for the mask and for q/k/v, so every length in
a 128-token bucket reuses one static-shape compilation. Compilations are counted with dynamo's
CompileCounter backend (it records each compiled frame and runs the graph eagerly: no C++ toolchain needed,
the same recompilation rules as inductor).
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounter

from rsneo.model import masks
from rsneo.model.attention import flex_attention
from rsneo.model.masks import flex_block_mask

from .conftest import golden_inputs


def attend(length: int, counter: CompileCounter, multiple: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Compiled and eager Flex on a packed row of two documents, the first holding an image block."""
    g = torch.Generator().manual_seed(length)
    doc = torch.zeros(1, length, dtype=torch.long)
    doc[0, length // 2 :] = 1
    block = torch.full((1, length), -1, dtype=torch.long)
    block[0, 3:20] = 0
    mask = flex_block_mask(doc, block, multiple)
    q, k = (torch.randn(1, 4, length, 40, generator=g) for _ in range(2))
    v = torch.randn(1, 4, length, 16, generator=g)
    compiled = flex_attention(q, k, v, mask, 0.25, compiled=True, backend=counter)
    return compiled, flex_attention(q, k, v, mask, 0.25, compiled=False)


def test_one_compilation_for_packed_rows_of_different_lengths():
    torch._dynamo.reset()
    counter = CompileCounter()
    for length in (100, 113, 127, 128):
        compiled, eager = attend(length, counter)
        assert compiled.shape == (1, 4, length, 16)
        torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-6)
    assert counter.frame_count == 1
    attend(200, counter)  # the next bucket is one more compilation, and the counter sees it
    assert counter.frame_count == 2


def test_unpadded_rows_would_recompile_per_length():
    """The control: without the padding each new length is a new compilation (the bug being fixed)."""
    torch._dynamo.reset()
    counter = CompileCounter()
    for length in (100, 113, 127):
        attend(length, counter, multiple=1)
    assert counter.frame_count == 3


@pytest.mark.parametrize("case", ["single", "packed"])
def test_block_mask_built_once_per_forward(case, golden_model, golden_cases, golden_config, monkeypatch):
    calls = []
    build = masks.flex_block_mask
    monkeypatch.setattr(
        "rsneo.model.backbone.flex_block_mask", lambda *a, **k: calls.append(1) or build(*a, **k)
    )
    with torch.no_grad():
        logits = golden_model(golden_inputs(golden_cases, case, golden_config), attn_backend="flex").logits
    assert len(calls) == 1 and golden_config.num_layers > 1
    torch.testing.assert_close(logits[0], golden_cases[f"{case}.logits"], rtol=0, atol=1e-4)
