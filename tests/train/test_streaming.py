"""Training on a streamed shard archive: held-out loss every N steps, and a mid-epoch resume that continues
exactly like an uninterrupted run; bf16 mixed precision trains the smoke experiment on the CPU."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from rsneo.cli import run_app

FAST = ["trainer.progress_bar=false", "trainer.tensorboard=false", "loss_curve=false"]


def _whole(item):
    return item


def rows(metrics: Path, column: str) -> dict[int, float]:
    with open(metrics, newline="") as handle:
        return {int(r["step"]): float(r[column]) for r in csv.DictReader(handle) if r.get(column)}


@pytest.fixture(scope="module")
def flood_shards(flood_tiles, tmp_path_factory) -> Path:
    """50 real Sen1Floods11 tiles in three shards: two to train on, the last held out."""
    from rsneo.data.shards import prepare_shards

    samples = flood_tiles
    out = tmp_path_factory.mktemp("flood") / "shards"
    prepare_shards([samples[:20], samples[20:40], samples[40:50]], _whole, out, 1, progress=False)
    return out


@pytest.mark.slow
# the resumed run writes into another folder on purpose (its metrics are compared with the first run's)
@pytest.mark.filterwarnings("ignore:The dirpath has changed from:UserWarning")
def test_streamed_training_validates_every_n_steps_and_resumes_mid_epoch(shared_data, flood_shards, tmp_path):
    common = [
        "experiment=smoke", "data=shards", f"data.path={flood_shards}", f"data_root={shared_data}",
        "data.batch_size=2", "data.shuffle_buffer=4", "trainer.max_steps=4", "trainer.num_workers=2",
        "trainer.val_every_n_steps=2", "trainer.val_batches=1", "trainer.checkpoint_every_n_steps=100", *FAST,
        "trainer.threads=1",  # the same summation order in every run, whatever the machine's load
    ]  # fmt: skip
    whole, first, second = tmp_path / "whole", tmp_path / "first", tmp_path / "second"
    assert run_app(["train", *common, f"out_dir={whole}"]) == 0
    assert run_app(["train", *common, f"out_dir={first}", "trainer.stop_at_step=2"]) == 0
    resume = first / "checkpoints" / "last.ckpt"
    assert run_app(["train", *common, f"out_dir={second}", f"resume={resume}"]) == 0
    uninterrupted = rows(whole / "metrics.csv", "train/loss")
    held_out = rows(whole / "metrics.csv", "val/loss")
    assert sorted(held_out) == [1, 3] and all(math.isfinite(v) for v in held_out.values())  # after steps 2, 4
    # compared in order: after a resume from a checkpoint written by the validation loop, Lightning labels the
    # CSV rows one step later (its loop bookkeeping, not the data: the values are the uninterrupted run's)
    before, after = rows(first / "metrics.csv", "train/loss"), rows(second / "metrics.csv", "train/loss")
    resumed = [before[k] for k in sorted(before)] + [after[k] for k in sorted(after)]
    assert len(before) == len(after) == 2
    # the same batches from the middle of the pass on
    assert resumed == pytest.approx([uninterrupted[k] for k in sorted(uninterrupted)], rel=1e-5, abs=1e-6)
    assert list(rows(second / "metrics.csv", "val/loss").values()) == pytest.approx([held_out[3]], rel=1e-5)


def test_too_few_shards_to_hold_one_out_is_an_input_error(shared_data, flood_shards, tmp_path):
    overrides = [
        "train", "experiment=smoke", "data=shards", f"data.path={flood_shards}", f"data_root={shared_data}",
        "trainer.max_steps=1", "trainer.val_every_n_steps=1", "data.val_shards=3",
        f"out_dir={tmp_path}", *FAST,
    ]  # fmt: skip
    assert run_app(overrides) == 2


@pytest.mark.slow
def test_bf16_mixed_trains_the_smoke_experiment_on_the_cpu(shared_data, tmp_path):
    code = run_app([
        "train", "experiment=smoke", "data=sen1floods11", f"data_root={shared_data}", f"out_dir={tmp_path}",
        "trainer.precision=bf16-mixed", "trainer.max_steps=2", "trainer.val_every_n_steps=1",
        "trainer.val_batches=1", *FAST,
    ])  # fmt: skip
    assert code == 0
    train, held_out = rows(tmp_path / "metrics.csv", "train/loss"), rows(tmp_path / "metrics.csv", "val/loss")
    assert sorted(train) == sorted(held_out) == [0, 1]
    assert all(math.isfinite(v) for v in [*train.values(), *held_out.values()])
    rates = rows(tmp_path / "metrics.csv", "train/tokens_per_s")  # the throughput callback, every step here
    assert sorted(rates) == [0, 1] and all(v > 0 for v in rates.values())
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    # fp32 master weights
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
