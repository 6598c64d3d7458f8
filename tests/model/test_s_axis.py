"""The S axis starts exactly at NEO and opens smoothly (its gate, `k_norm_s.weight`, starts at zero)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from rsneo.model import RSNeoConfig, RSNeoForCausalLM

from .conftest import golden_inputs

S_AXIS = lambda n: "_proj_s." in n or "_norm_s." in n  # noqa: E731
OTHER_NEW = {  # parameters a NEO/Qwen3 start adds besides the S axis
    "hw": lambda n: "_proj_hw." in n or "_norm_h." in n or "_norm_w." in n,
    "prebuffer": lambda n: n.startswith("backbone.layers.0."),
    "vision": lambda n: n.startswith("backbone.vision."),
}


def _logit_change(model, inputs, target, select: Callable[[str], bool], step: str) -> float:
    """Max |logit change| after one step on the selected parameters of a copy of `model`.

    `adamw`: one AdamW step at lr 1e-5 (every element moves by about 1e-5, the issue's measurement);
    `norm`: a gradient step of Euclidean length 1e-3 in the selected parameters (a step of equal size for
    every group, so the change measures how steep the logits are in those parameters).
    """
    model = copy.deepcopy(model)
    params = [p for n, p in model.named_parameters() if select(n)]
    with torch.no_grad():
        before = model(inputs).logits[0]
    loss = torch.nn.functional.cross_entropy(model(inputs).logits[0, :-1], target)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
    with torch.no_grad():
        if step == "adamw":
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            torch.optim.AdamW(params, lr=1e-5).step()
        else:
            norm = torch.sqrt(sum((g**2).sum() for g in grads))
            for p, g in zip(params, grads, strict=True):
                p -= 1e-3 * g / norm
        return float((model(inputs).logits[0] - before).abs().max())


def _ungated(model: RSNeoForCausalLM) -> RSNeoForCausalLM:
    """The earlier start: k_proj_s at zero under a unit-weight RMSNorm (exact, but it jumps)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for layer in model.backbone.layers:
            layer.self_attn.k_proj_s.weight.zero_()
            layer.self_attn.k_norm_s.weight.fill_(1.0)
    return model


def test_s_axis_starts_exactly_at_neo(golden_cases, golden_config, golden_model):
    assert golden_config.spectral_head_dim > 0
    for layer in golden_model.backbone.layers:
        attn = layer.self_attn
        assert not attn.k_norm_s.weight.any() and attn.k_proj_s.weight.abs().sum() > 0  # gate shut, keys live
    inputs = golden_inputs(golden_cases, "packed", golden_config)
    with torch.no_grad():
        logits = golden_model(inputs).logits[0]
        keys = golden_model.backbone.layers[1].self_attn._project(
            golden_model.backbone.embed(inputs), _rope(golden_model, inputs), golden_config.num_kv_heads, "k"
        )
    assert not keys[..., 2 * golden_config.head_dim :].any()  # the S part of every key is exactly zero
    torch.testing.assert_close(logits, golden_cases["packed.logits"], rtol=0, atol=1e-4)


def _rope(model, inputs):
    from rsneo.model.rope import NativeRopeTables

    c = model.config
    return NativeRopeTables.build(
        inputs.positions, c.head_dim, c.spectral_head_dim, c.rope_theta, c.rope_theta_hw, c.rope_theta_s
    )


def test_s_axis_moves_gently(golden_cases, golden_config, golden_model):
    inputs = golden_inputs(golden_cases, "packed", golden_config)
    target = golden_cases["packed.input_ids"][1:]
    change = lambda model, select, step: _logit_change(model, inputs, target, select, step)  # noqa: E731
    # the measurement: one AdamW step at lr 1e-5 moved the ungated start's logits by ~0.5
    gated, ungated = change(golden_model, S_AXIS, "adamw"), change(_ungated(golden_model), S_AXIS, "adamw")
    assert 0 < gated < 1e-3 < 0.1 < ungated
    # a step of equal length moves the logits about as much as it does for the other new parameters
    # (measured: S 1.6e-4, others 3.6e-3 .. 7.3e-3, ungated S 0.97): within a factor 100 below, never above
    others = [change(golden_model, select, "norm") for select in OTHER_NEW.values()]
    s_step = change(golden_model, S_AXIS, "norm")
    assert min(others) / 100 < s_step <= max(others)
    assert change(_ungated(golden_model), S_AXIS, "norm") > 10 * max(others)


def test_fresh_model_starts_with_the_s_gate_shut():
    model = RSNeoForCausalLM(RSNeoConfig.from_preset("tiny"))
    for layer in model.backbone.layers:
        assert not layer.self_attn.k_norm_s.weight.any()
        assert layer.self_attn.k_proj_s.weight.std() > 0.01  # initialised like any projection
