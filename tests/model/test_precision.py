"""bf16 and fp16: forward, backward and cached generation on every backend's CPU path, and autocast.

Tolerances come from the formats' unit roundoff u (bf16: 2^-8, fp16: 2^-11, relative). Between the input and
a logit of the tiny model lie about 60 rounded operations (3 layers of norms, projections, rotary,
attention, MLP, residuals); independent rounding errors grow like their square root, so a logit is expected
within about sqrt(60) ~ 8 u of fp32, relative to the logits' scale: `8 * u * max|logits|`.
"""

from __future__ import annotations

import copy

import pytest
import torch

from rsneo.model import KVCache, RSNeoForCausalLM, text_positions
from rsneo.model.generate import _step_inputs

from .conftest import golden_inputs

DTYPES = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
BACKENDS = ("sdpa", "flex", "flash")


def tolerance(dtype: torch.dtype, reference: torch.Tensor) -> float:
    return 8 * DTYPES[dtype] * float(reference.abs().max())


@pytest.fixture(scope="module")
def half_models(golden_dir) -> dict[torch.dtype, RSNeoForCausalLM]:
    """The golden tiny model (the `tiny` preset's shape) with its spectral phase opened, so all four axes
    count."""
    import json

    from safetensors.torch import load_file

    from rsneo.model import RSNeoConfig
    from rsneo.model.convert import neo_state_dict_to_rsneo

    config = RSNeoConfig.from_neo_json(json.loads((golden_dir / "neo_tiny_config.json").read_text()))
    model = RSNeoForCausalLM(config)
    state = neo_state_dict_to_rsneo(load_file(str(golden_dir / "neo_tiny_weights.safetensors")), config)
    model.load_state_dict(state)
    with torch.no_grad():
        for layer in model.backbone.layers:
            layer.self_attn.spectral_frequencies.normal_(std=0.3)
    model.eval()
    return {torch.float32: model} | {dt: copy.deepcopy(model).to(dt) for dt in DTYPES}


def batches(cases, config) -> dict[str, object]:
    text = text_positions(torch.tensor([[5, 17, 200, 31, 99, 42, 7, 250], [11, 12, 13, 14, 15, 16, 17, 18]]))
    return {"text": text, "images": golden_inputs(cases, "packed", config)}


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_and_backward_in_half_precision(dtype, backend, half_models, golden_cases):
    reference, model = half_models[torch.float32], half_models[dtype]
    for name, inputs in batches(golden_cases, model.config).items():
        with torch.no_grad():
            expected = reference(inputs, attn_backend=backend).logits
            logits = model(inputs, attn_backend=backend).logits
        assert logits.dtype == dtype, name
        torch.testing.assert_close(logits.float(), expected, rtol=0, atol=tolerance(dtype, expected))
        # backward (Flex has no CPU backward: it runs as SDPA there, which is the CPU path being tested)
        model.zero_grad()
        labels = inputs.input_ids.clone()
        labels[:, :-1], labels[:, -1] = inputs.input_ids[:, 1:], -100
        inputs.labels = labels
        loss = model(inputs, attn_backend=backend).loss
        inputs.labels = None
        loss.backward()
        assert torch.isfinite(loss), name
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        assert all(g.dtype == dtype and torch.isfinite(g).all() for g in grads.values()), name
        assert any(n.startswith("backbone.layers.0.") for n in grads), name
        if name == "images":
            assert grads["backbone.vision.anchors"].abs().sum() > 0
        model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_cached_generation_in_half_precision(dtype, backend, half_models, golden_cases):
    model = half_models[dtype]
    prompt = golden_inputs(golden_cases, "single", model.config)
    tokens = model.generate(prompt, max_new_tokens=4, attn_backend=backend)
    assert tokens.shape == (1, 4) and tokens.dtype == torch.long
    # the cached step's logits equal a full recomputation of the prompt plus that token, within rounding
    with torch.no_grad():
        cache = KVCache()
        first = model(prompt, cache=cache, attn_backend=backend).logits[:, -1].argmax(-1)
        step = _step_inputs(first[:, None], prompt.positions[0, :, -1], prompt.doc_ids[:, -1])
        cached = model(step, cache=cache, attn_backend=backend).logits[:, -1]
        from rsneo.model.generate import _append

        full = model(_append(prompt, step), attn_backend=backend).logits[:, -1]
    assert cached.dtype == dtype and cache.layers[0][0].dtype == dtype
    torch.testing.assert_close(cached.float(), full.float(), rtol=0, atol=tolerance(dtype, full.float()))


@pytest.mark.parametrize("case", ["single", "packed"])
def test_bf16_logits_stay_near_the_golden_fp32(case, golden_model, golden_cases, golden_config):
    """The unmodified golden model cast to bf16 (measured max error: 0.018 single, 0.025 packed)."""
    inputs = golden_inputs(golden_cases, case, golden_config)
    expected = golden_cases[f"{case}.logits"]
    with torch.no_grad():
        logits = golden_model.to(torch.bfloat16)(inputs).logits[0].float()
    torch.testing.assert_close(logits, expected, rtol=0, atol=tolerance(torch.bfloat16, expected))


def test_autocast_bf16_trains_an_fp32_model(half_models, golden_cases):
    """bf16-mixed: fp32 weights, bf16 compute; the rotary stays fp32 and attention runs in one dtype."""
    model = copy.deepcopy(half_models[torch.float32]).train()
    inputs = golden_inputs(golden_cases, "packed", model.config)
    labels = inputs.input_ids.clone()
    labels[:, :-1], labels[:, -1] = inputs.input_ids[:, 1:], -100
    inputs.labels = labels
    with torch.no_grad():
        expected = model(inputs).logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(inputs)
    out.loss.backward()
    assert out.logits.dtype == torch.bfloat16
    torch.testing.assert_close(out.logits.float(), expected, rtol=0, atol=tolerance(torch.bfloat16, expected))
    assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
               for p in model.parameters() if p.grad is not None)  # fmt: skip
    assert model.backbone.vision.anchors.grad.abs().sum() > 0


def test_rope_linear_scaling_divides_t_and_hw_positions(golden_model, golden_cases, golden_config):
    from dataclasses import replace

    inputs = golden_inputs(golden_cases, "single", golden_config)
    scaled = copy.deepcopy(golden_model)
    scaled.config = replace(golden_config, rope_linear_factor=2.0)
    scaled.backbone.config = scaled.config
    halved = copy.deepcopy(inputs)
    halved.positions[:3] /= 2
    with torch.no_grad():
        a, b = scaled(inputs).logits, golden_model(halved).logits
        plain = golden_model(inputs).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert (a - plain).abs().max() > 1e-3
