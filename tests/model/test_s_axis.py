"""The S axis as a phase on existing rotary pairs: no extra q/k width, exactly NEO at the start and for S = 0,
and it opens smoothly (its gate, the per-pair spectral frequencies, starts at zero)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch

from rsneo.model import RSNeoConfig, RSNeoForCausalLM
from rsneo.model.masks import FLASH_MAX_HEAD_DIM, flash_plan

from .conftest import golden_inputs

S_AXIS = lambda n: n.endswith("spectral_frequencies")  # noqa: E731
OTHER_NEW = {  # parameters a NEO/Qwen3 start adds besides the S axis
    "hw": lambda n: "_proj_hw." in n or "_norm_h." in n or "_norm_w." in n,
    "prebuffer": lambda n: n.startswith("backbone.layers.0."),
    "vision": lambda n: n.startswith("backbone.vision."),
}


def _logit_change(model, inputs, target, select: Callable[[str], bool], step: str) -> float:
    """Max |logit change| after one step on the selected parameters of a copy of `model`.

    `adamw`: one AdamW step at lr 1e-5 (every element moves by about 1e-5); `norm`: a gradient step of
    Euclidean length 1e-3 in the selected parameters (a step of equal size for every group, so the change
    measures how steep the logits are in those parameters).
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


@pytest.mark.parametrize("preset", ["neo-2.2b", "neo-9b"])
def test_queries_and_keys_stay_neo_wide_and_flash_takes_them(preset):
    config = RSNeoConfig.from_preset(preset)
    assert config.spectral_layout == "phase" and config.qk_dim == 2 * config.head_dim == 256
    assert config.qk_dim <= FLASH_MAX_HEAD_DIM
    doc = torch.tensor([[0, 0, 0, 1, 1]])
    assert flash_plan(doc, torch.full_like(doc, -1), config.qk_dim) is not None  # text rows get a plan
    with torch.device("meta"):
        attention = RSNeoForCausalLM(config).backbone.layers[0].self_attn
    assert attention.spectral_frequencies.shape == (config.head_dim,)  # one per rotary pair of [T | H | W]
    assert attention.q_proj_hw.weight.shape[0] == config.num_heads * config.head_dim  # NEO's own shapes


def test_s_axis_starts_exactly_at_neo(golden_cases, golden_config, golden_model):
    assert all(not layer.self_attn.spectral_frequencies.any() for layer in golden_model.backbone.layers)
    inputs = golden_inputs(golden_cases, "packed", golden_config)
    moved = copy.deepcopy(inputs)
    moved.positions[3] = torch.rand_like(moved.positions[3]) * 100  # any spectral coordinates at all
    with torch.no_grad():
        logits = golden_model(inputs).logits[0]
        other = golden_model(moved).logits[0]
    assert torch.equal(logits, other)  # with the frequencies at zero every angle is exactly NEO's
    torch.testing.assert_close(logits, golden_cases["packed.logits"], rtol=0, atol=1e-4)


def test_s_axis_is_the_identity_at_s_zero_whatever_the_frequencies(golden_cases, golden_config, golden_model):
    """Text has S = 0; with S = 0 everywhere the phase is exactly 0 even for opened frequencies."""
    inputs = golden_inputs(golden_cases, "packed", golden_config)
    inputs.positions[3] = 0.0
    with torch.no_grad():
        plain = golden_model(inputs).logits
        for layer in golden_model.backbone.layers:
            layer.self_attn.spectral_frequencies.normal_(std=1.0)
        opened = golden_model(inputs).logits
    assert torch.equal(plain, opened)


def test_s_axis_moves_gently(golden_cases, golden_config, golden_model):
    """One AdamW step at lr 1e-5 moves the logits by far less than 1e-3 (measured 1.5e-4; the first S-channel
    layout, ungated, moved them by ~0.5); a step of equal length moves them about as much as it does for the
    other new parameters (measured: S 2.9e-3, others 3.6e-3 .. 7.3e-3): within a factor 100 below, never
    above."""
    inputs = golden_inputs(golden_cases, "packed", golden_config)
    target = golden_cases["packed.input_ids"][1:]
    change = lambda select, step: _logit_change(golden_model, inputs, target, select, step)  # noqa: E731
    assert 0 < change(S_AXIS, "adamw") < 1e-3
    others = [change(select, "norm") for select in OTHER_NEW.values()]
    assert min(others) / 100 < change(S_AXIS, "norm") <= max(others)


def test_fresh_model_starts_with_the_frequencies_at_zero():
    model = RSNeoForCausalLM(RSNeoConfig.from_preset("tiny"))
    for layer in model.backbone.layers:
        assert layer.self_attn.spectral_frequencies.shape == (16,)
        assert not layer.self_attn.spectral_frequencies.any()
        assert layer.self_attn.spectral_frequencies.requires_grad


@pytest.mark.parametrize(("pairs", "count"), [("all", 16), ("t", 8), ("hw", 8)])
def test_spectral_pairs_choose_how_many_frequencies_a_layer_learns(pairs, count):
    attention = RSNeoForCausalLM(RSNeoConfig(spectral_pairs=pairs)).backbone.layers[1].self_attn
    assert attention.spectral_frequencies.shape == (count,)
    assert (
        RSNeoForCausalLM(RSNeoConfig(spectral_pairs="none")).backbone.layers[1].self_attn.spectral_frequencies
        is None
    )
