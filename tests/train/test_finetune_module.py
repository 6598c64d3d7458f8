"""The fine-tuning schedule: the warm-up runs its steps; with a CPU budget the cosine then decays with the
budget spent, never later than the steps would have taken it."""

from __future__ import annotations

import pytest

from rsneo.train.finetune_module import budget_cosine
from rsneo.train.schedule import warmup_cosine


def test_without_a_budget_it_is_the_step_schedule():
    for step in (0, 5, 19, 20, 100, 399):
        assert budget_cosine(step, 20, 400, 0.05, None) == warmup_cosine(step, 20, 400, 0.05)


def test_a_spent_budget_ends_the_decay_and_an_early_step_is_not_held_back():
    assert budget_cosine(3, 20, 400, 0.05, lambda: 0.5) == warmup_cosine(3, 20, 400, 0.05)  # warming up
    assert budget_cosine(30, 20, 400, 0.05, lambda: 1.0) == pytest.approx(0.05)  # budget gone: the floor
    half = budget_cosine(30, 20, 400, 0.05, lambda: 0.5)
    assert half == pytest.approx(warmup_cosine(210, 20, 400, 0.05))  # as far as half the decay
    assert budget_cosine(300, 20, 400, 0.05, lambda: 0.1) == warmup_cosine(300, 20, 400, 0.05)  # steps lead
