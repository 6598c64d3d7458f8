"""`rsneo.train.schedule`: linear warm-up then cosine decay, and AdamW that decays matrices only."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from rsneo.train.schedule import build_optimizer, warmup_cosine


@pytest.mark.parametrize(
    ("step", "factor"),
    [
        (0, 0.25),  # warm-up: (step + 1) / warmup, so the first step already moves
        (1, 0.5),
        (3, 1.0),
        (4, 1.0),  # the peak: cosine progress 0
        (9, 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 5 / 10))),  # half-way down: 0.55
        (14, 0.1),  # the end of the schedule: min_ratio
        (100, 0.1),  # past the end it stays at min_ratio, never rises again
    ],
)
def test_warmup_cosine_factor_at_given_steps(step, factor):
    assert warmup_cosine(step, warmup_steps=4, total_steps=14, min_ratio=0.1) == pytest.approx(
        factor, abs=1e-12
    )


def test_cosine_decay_never_increases_after_warmup():
    factors = [warmup_cosine(s, 10, 110, 0.0) for s in range(10, 120)]
    assert all(a >= b for a, b in zip(factors, factors[1:], strict=False))
    assert factors[0] == 1.0 and factors[-1] == 0.0


def test_no_warmup_and_a_run_that_is_all_warmup_do_not_divide_by_zero():
    assert warmup_cosine(0, 0, 10, 0.2) == 1.0  # no warm-up: the peak at once
    assert [warmup_cosine(s, 5, 5, 0.2) for s in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)  # weight (2-d, decayed) + bias (1-d, not)
        self.norm = nn.LayerNorm(2)  # 1-d gain and bias, not decayed
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def test_optimizer_decays_matrices_only_and_skips_frozen_parameters():
    module = _Tiny()
    optimizer, _ = build_optimizer(module, 1e-3, 0.1, (0.9, 0.95), 2, 10, 0.1)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [p is module.linear.weight for p in decay["params"]] == [True]
    assert {id(p) for p in no_decay["params"]} == {
        id(module.linear.bias),
        id(module.norm.weight),
        id(module.norm.bias),
    }
    assert decay["betas"] == (0.9, 0.95)


def test_scheduler_sets_the_learning_rate_step_by_step_and_its_state_is_plain_numbers():
    module = _Tiny()
    optimizer, scheduler = build_optimizer(module, 1e-3, 0.0, (0.9, 0.95), 2, 6, 0.1)
    seen = []
    for _ in range(7):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [1e-3 * warmup_cosine(s, 2, 6, 0.1) for s in range(7)]
    assert seen == pytest.approx(expected, rel=1e-12)
    state = scheduler.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=True)  # no callables pickled: a checkpoint stays safe to load
