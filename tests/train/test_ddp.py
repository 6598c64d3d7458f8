"""DDP on the CPU: two processes (gloo) end with identical weights, and each saw different data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.slow
def test_two_cpu_processes_hold_identical_weights_and_saw_different_batches(shared_data, tmp_path):
    overrides = [
        "experiment=smoke", "data=sen1floods11", "trainer=ddp", "trainer.accelerator=cpu",
        "trainer.devices=2", "trainer.num_workers=0",  # loader processes are the shard tests' subject
        "trainer.precision=32-true", "trainer.max_steps=3", "trainer.progress_bar=false",
        "trainer.tensorboard=false", "loss_curve=false", "trainer.checkpoint_every_n_steps=100",
        f"data_root={shared_data}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=0",
        "--rdzv_backend=c10d", "--rdzv_endpoint=localhost:0", str(WORKER), str(tmp_path), *overrides,
    ]  # fmt: skip
    # the worker dumps its stacks and exits at 300 s: a hang fails with where it hung
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    a, b = ranks[0]["state"], ranks[1]["state"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # gradients were all-reduced every step
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == 3
    for step in range(3):
        assert ranks[0]["seen"][step] != ranks[1]["seen"][step]  # each rank had its own documents
