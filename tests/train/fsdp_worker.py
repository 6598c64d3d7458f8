"""Run by `torchrun --nproc_per_node 2` from test_fsdp.py, in one of two modes:

- `setup OUT OVERRIDES...`: set up a NEO-9B-shaped run under FSDP (gloo, CPU) and save, per rank, the peak
  host memory of the set-up, the size of the rank's parameter shard and what its values look like; stops
  before the first step.
- `train OUT OVERRIDES...`: train (or resume) and save, per rank, every step's losses as the rank logged them.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import resource
import sys
import warnings
from pathlib import Path

import lightning as L
import torch


class Stop(Exception):
    pass


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def local(param: torch.Tensor) -> torch.Tensor:
    return param.to_local() if hasattr(param, "to_local") else param


class Inspect(L.Callback):
    def __init__(self, out: Path, before: int, total: int) -> None:
        self.out, self.before, self.total = out, before, total

    def on_train_start(self, trainer, pl_module) -> None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        shards = {n: local(p).detach() for n, p in pl_module.model.named_parameters()}
        values = {
            "norms_are_one": all(
                bool((p == 1).all()) for n, p in shards.items() if n.endswith("norm.weight")
            ),
            "s_phase_is_zero": all(
                not p.any() for n, p in shards.items() if n.endswith("spectral_frequencies")
            ),
            "q_proj_std": [
                float(p.std()) for n, p in shards.items() if n.endswith("q_proj.weight") and p.numel()
            ],
            "meta_left": any(p.is_meta for p in shards.values()),
        }
        report = {
            "rank": trainer.global_rank, "world": trainer.world_size, "rss_before": self.before, "peak": peak,
            "local_numel": sum(p.numel() for p in shards.values()), "total_numel": self.total, **values,
        }  # fmt: skip
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))
        raise Stop


class Losses(L.Callback):
    """Each optimizer step's losses as this rank logged them (`train/<objective>_loss`, local values)."""

    def __init__(self, out: Path, label: str) -> None:
        self.out, self.label, self.steps = out, label, {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        self.steps[trainer.global_step - 1] = metrics

    def on_train_end(self, trainer, pl_module) -> None:
        path = self.out / f"losses_{self.label}_rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.steps))


def main(mode: str, out: str, overrides: list[str]) -> None:
    from rsneo.train.config import load_config
    from rsneo.train.run import build_run

    warnings.simplefilter("ignore")
    if mode == "setup":
        run = build_run(load_config([*overrides, f"out_dir={out}"]))
        assert all(p.is_meta for p in run.module.model.parameters())  # nothing allocated yet
        total = sum(p.numel() for p in run.module.model.parameters())
        run.trainer.callbacks.append(Inspect(Path(out), rss_bytes(), total))
        with contextlib.suppress(Stop):
            run.trainer.fit(run.module, datamodule=run.datamodule)
        return
    label = "resumed" if any(o.startswith("resume=") and o != "resume=null" for o in overrides) else "first"
    run = build_run(load_config([*overrides, f"out_dir={out}"]))
    run.trainer.callbacks.append(Losses(Path(out), label))
    resume = run.config["resume"]
    run.trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=resume or None, weights_only=True)


if __name__ == "__main__":
    faulthandler.dump_traceback_later(780, exit=True)  # a hang shows where, before the test's 900 s limit
    torch.set_num_threads(1)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
