"""`benchmarks/finetune_report.py`: the paired summary over seeds that the README's fine-tuning rows quote."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPORT = Path(__file__).resolve().parents[2] / "benchmarks" / "finetune_report.py"


def load_report():
    spec = importlib.util.spec_from_file_location("finetune_report", REPORT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(method: str, seed: int, iou: float, set_name: str = "s1") -> dict:
    return {"set": set_name, "fold": 0, "method": method, "seed": seed, "overrides": [],
            "scores": {"iou": iou, "f1": 2 * iou / (1 + iou)}}  # fmt: skip


def test_leads_are_paired_by_seed_with_a_t_interval():
    """Leads 0.1, 0.2, 0.3: mean 0.2, sample sd 0.1, t(0.975, 2 df) = 4.303, half-width 0.248. A peer's
    seed that rsneo did not run is left out of the pairs."""
    rows = [row("rsneo", s, 0.6 + 0.1 * (s + 1)) for s in range(3)]
    rows += [row("unet", s, 0.6) for s in range(4)]
    [header, line] = load_report().seed_summary(rows)
    assert "over seeds" in header
    assert line == (
        "s1 fold 0, iou, seeds [0, 1, 2]: rsneo 0.800, unet 0.600; "
        "lead +0.200 (95 % interval -0.048 to +0.448), ahead in 3 of 3"
    )


@pytest.mark.parametrize("seeds", [[0], []])
def test_one_seed_gives_no_interval(seeds):
    rows = [row("rsneo", s, 0.7) for s in seeds] + [row("unet", s, 0.6) for s in seeds]
    assert load_report().seed_summary(rows) == []
