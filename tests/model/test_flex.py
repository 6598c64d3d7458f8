"""Compiled FlexAttention stays compiled: batches are padded to a bucket ladder of rows and tokens per row, so
a run meets a bounded set of shapes; past torch's recompile limit rsneo stops with a message instead of
running Flex uncompiled.

Compilations are counted with dynamo's CompileCounter backend (it records each compiled frame and runs the
graph eagerly: no C++ toolchain needed, the same recompilation rules as inductor). An uncompiled Flex call is
seen where torch warns about it (`_warn_once` with id `flex_attention_performance`, in Flex's Python body,
which only runs outside a compiled graph).
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounter
from torch._dynamo.utils import counters

from rsneo.errors import InputError
from rsneo.model import RSNeoConfig, RSNeoForCausalLM
from rsneo.model.flex import FlexBuckets, FlexOptions, flex_attention
from rsneo.model.inputs import ModelInputs
from rsneo.model.masks import flex_block_mask

# the CPU reference path: Flex uncompiled, which torch warns about (the point of the eager comparisons here)
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile:UserWarning")


@pytest.fixture
def uncompiled_calls(monkeypatch) -> list[str]:
    """Every uncompiled Flex call (torch's own warning id for it), whether or not the warning shows."""
    import torch.nn.attention.flex_attention as module

    calls: list[str] = []
    real = module._warn_once

    def record(warning_id: str, message: str, **kwargs) -> None:
        calls.append(warning_id)
        real(warning_id, message, **kwargs)

    monkeypatch.setattr(module, "_warn_once", record)
    return calls


def batch(rows: int, length: int) -> ModelInputs:
    """Text rows of two documents each, the first with a bidirectional block (an image's mask)."""
    g = torch.Generator().manual_seed(rows * 1000 + length)
    ids = torch.randint(10, 400, (rows, length), generator=g)
    positions = torch.zeros(4, rows, length)
    positions[0] = torch.arange(length).float()
    doc = torch.zeros(rows, length, dtype=torch.long)
    doc[:, length // 2 :] = 1
    block = torch.full((rows, length), -1, dtype=torch.long)
    block[:, 1 : max(2, length // 4)] = 0
    return ModelInputs(ids, positions, doc, block)


SHAPES = [(1, 16), (1, 60), (1, 128), (2, 30), (2, 100), (3, 20), (3, 90), (4, 50), (4, 128), (1, 129),
          (2, 150), (3, 200), (4, 140), (2, 128)]  # fmt: skip


@pytest.mark.slow
def test_fourteen_batch_shapes_compile_once_per_bucket_and_never_run_uncompiled(uncompiled_calls):
    """A one-layer model (each Flex call of a graph run without inductor costs ~0.3 s of CPU here)."""
    torch._dynamo.reset()
    counters.clear()
    counter = CompileCounter()
    torch.manual_seed(0)
    model = RSNeoForCausalLM(RSNeoConfig(num_layers=1, prebuffer_layers=0)).eval()
    model.backbone.flex = FlexOptions(compile=True, backend=counter)
    buckets = {model.backbone.flex.buckets.shape(*shape) for shape in SHAPES}
    assert len(SHAPES) >= 12 and buckets == {(r, n) for r in (1, 2, 4) for n in (128, 256)}
    with torch.no_grad():
        for rows, length in SHAPES:
            inputs = batch(rows, length)
            flex = model(inputs, attn_backend="flex").logits
            dense = model(inputs, attn_backend="sdpa").logits
            assert flex.shape == (rows, length, model.config.vocab_size)
            torch.testing.assert_close(flex, dense, rtol=0, atol=1e-5)  # fp32, two kernels' summation orders
    assert counter.frame_count == len(buckets)  # one compilation per bucket
    assert counters["frames"]["ok"] == len(buckets)
    assert "flex_attention_performance" not in uncompiled_calls  # no call ran outside the compiled graph
    torch._dynamo.reset()


def test_without_the_ladder_torch_would_fall_back_to_uncompiled_flex(uncompiled_calls):
    """The control (the bug being fixed): one compiled function fed 10 unpadded shapes passes torch's limit
    of 8 variants and the 9th runs uncompiled, with only a log line to say so."""
    from torch.nn.attention.flex_attention import create_block_mask
    from torch.nn.attention.flex_attention import flex_attention as flex

    torch._dynamo.reset()
    compiled = torch.compile(flex, dynamic=False, backend=CompileCounter())
    causal = lambda b, h, q, k: k <= q  # noqa: E731
    for length in range(100, 110):
        mask = create_block_mask(causal, 1, None, length, length, device="cpu")
        q = torch.randn(1, 2, length, 16)
        compiled(q, q, q, block_mask=mask)
    assert "flex_attention_performance" in uncompiled_calls
    torch._dynamo.reset()


def test_past_the_recompile_limit_rsneo_stops_instead_of_running_uncompiled(uncompiled_calls):
    """Shapes the ladder does not bound (here the head width) exhaust torch's limit: an error naming the
    cause."""
    torch._dynamo.reset()
    options = FlexOptions(
        buckets=FlexBuckets(lengths=(128,), rows=(1,)), compile=True, backend=CompileCounter()
    )
    doc = torch.zeros(1, 50, dtype=torch.long)
    mask = flex_block_mask(doc, torch.full_like(doc, -1), options.buckets)
    with pytest.raises(RuntimeError, match="more shapes than the bucket ladder holds"):
        for width in range(16, 16 + 8 * 12, 8):
            q = torch.randn(1, 2, 50, width)
            flex_attention(q, q, q, mask, 0.25, options)
    assert "flex_attention_performance" not in uncompiled_calls
    torch._dynamo.reset()


def test_a_batch_beyond_the_ladder_is_refused_with_the_ladder_named():
    buckets = FlexBuckets(lengths=(128, 256), rows=(1, 2))
    assert buckets.shape(2, 129) == (2, 256) and buckets.shape(1, 1) == (1, 128) and buckets.size == 4
    with pytest.raises(
        InputError, match=r"3 rows x 10 tokens is beyond the bucket ladder \(at most 2 rows x 256"
    ):
        buckets.shape(3, 10)
    with pytest.raises(InputError, match="model.flex_lengths"):
        buckets.shape(1, 257)


def test_a_ladder_that_cannot_hold_max_tokens_is_refused():
    FlexBuckets(lengths=(1024, 4096)).check_holds(4096)
    with pytest.raises(InputError, match="longest bucket holds 4096 tokens per row, but max_tokens is 5000"):
        FlexBuckets(lengths=(1024, 4096)).check_holds(5000)
    with pytest.raises(InputError, match="multiples of 128"):
        FlexBuckets(lengths=(100, 4096))
    with pytest.raises(InputError, match="strictly increasing"):
        FlexBuckets(rows=(4, 2))


def test_padding_rows_and_tokens_to_the_bucket_changes_nothing():
    """The same batch through a tight ladder and a loose one (more padding rows and tokens): same output."""
    torch.manual_seed(0)
    doc = torch.tensor([[0, 0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, -1, -1]])
    block = torch.tensor([[-1, 0, 0, -1, -1, -1, -1], [-1, -1, 1, 1, -1, -1, -1]])
    q, k, v = torch.randn(2, 4, 7, 40), torch.randn(2, 2, 7, 40), torch.randn(2, 2, 7, 24)  # grouped kv heads
    tight = FlexOptions(buckets=FlexBuckets(lengths=(128,), rows=(2,)))
    loose = FlexOptions(buckets=FlexBuckets(lengths=(512,), rows=(8,)))
    a = flex_attention(q, k, v, flex_block_mask(doc, block, tight.buckets), 0.25, tight)
    b = flex_attention(q, k, v, flex_block_mask(doc, block, loose.buckets), 0.25, loose)
    assert a.shape == b.shape == (2, 4, 7, 24)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", ["single", "packed"])
def test_block_mask_built_once_per_forward(case, golden_model, golden_cases, golden_config, monkeypatch):
    from rsneo.model import masks

    from .conftest import golden_inputs

    calls = []
    build = masks.flex_block_mask
    monkeypatch.setattr(
        "rsneo.model.backbone.flex_block_mask", lambda *a, **k: calls.append(1) or build(*a, **k)
    )
    with torch.no_grad():
        logits = golden_model(golden_inputs(golden_cases, case, golden_config), attn_backend="flex").logits
    assert len(calls) == 1 and golden_config.num_layers > 1
    torch.testing.assert_close(logits[0], golden_cases[f"{case}.logits"], rtol=0, atol=1e-4)
