"""A resumed run keeps the whole metrics history: appended, each step once."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from rsneo.cli import run_app
from rsneo.train.csvlog import ResumableCSVLogger

FAST = ["trainer.progress_bar=false", "trainer.tensorboard=false", "data=sen1floods11"]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_history_is_kept_and_repeated_steps_replaced(tmp_path):
    (tmp_path / "metrics.csv").write_text(
        "step,train/loss\n0,5.0\n1,4.0\n2,3.0\n3,2.5\n"  # a run killed after logging step 3
    )
    logger = ResumableCSVLogger(save_dir=str(tmp_path), name="", version="")
    # resumed from its step-2 checkpoint: steps 2 and 3 come again, with a new column
    logger.log_metrics({"train/loss": 3.1, "lr": 0.1}, step=2)
    logger.log_metrics({"train/loss": 2.4, "lr": 0.1}, step=3)
    logger.save()
    logger.log_metrics({"train/loss": 2.0, "lr": 0.1}, step=4)
    logger.save()
    history = rows(tmp_path / "metrics.csv")
    assert [int(r["step"]) for r in history] == [0, 1, 2, 3, 4]
    assert [float(r["train/loss"]) for r in history] == [5.0, 4.0, 3.1, 2.4, 2.0]
    assert [r["lr"] for r in history] == ["", "", "0.1", "0.1", "0.1"]


@pytest.mark.slow
def test_resumed_train_appends_to_metrics_csv(shared_data, tmp_path):
    out = tmp_path / "run"
    common = ["experiment=smoke", f"data_root={shared_data}", f"out_dir={out}", "trainer.max_steps=4", *FAST]
    checkpoints = ["trainer.checkpoint_every_n_steps=2", "trainer.log_every_n_steps=1"]
    assert run_app(["train", *common, *checkpoints, "trainer.stop_at_step=3"]) == 0
    first = rows(out / "metrics.csv")
    assert sorted({int(r["step"]) for r in first if r.get("train/loss")}) == [0, 1, 2]
    resume = out / "checkpoints" / "step000002.ckpt"  # steps after it were logged, then "lost"
    assert run_app(["train", *common, *checkpoints, f"resume={resume}"]) == 0
    history = [r for r in rows(out / "metrics.csv") if r.get("train/loss")]
    assert [int(r["step"]) for r in history] == [0, 1, 2, 3]  # every step once, in order
    before = {int(r["step"]): r["train/loss"] for r in first if r.get("train/loss")}
    assert [r["train/loss"] for r in history[:2]] == [before[0], before[1]]  # history kept as written
