"""Run by `torchrun --nproc_per_node 2` from test_fsdp.py: set up a NEO-9B-shaped run under Lightning's FSDP
strategy (gloo, CPU) and save, per rank, the peak host memory of the set-up, the size of the rank's
parameter shard and what its initialised values look like; stops before the first step."""

from __future__ import annotations

import contextlib
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


class Inspect(L.Callback):
    def __init__(self, out: Path, before: int, total: int) -> None:
        self.out, self.before, self.total = out, before, total

    def on_train_start(self, trainer, pl_module) -> None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        local = {n: p.detach() for n, p in trainer.strategy.model.named_parameters() if ".model." in f".{n}"}
        values = {
            "norms_are_one": all(bool((p == 1).all()) for n, p in local.items() if n.endswith("norm.weight")),
            "s_gate_is_shut": all(bool((p == 0).all()) for n, p in local.items() if "k_norm_s" in n),
            "q_proj_std": [
                float(p.std()) for n, p in local.items() if n.endswith("q_proj.weight") and p.numel()
            ],
            "meta_left": any(p.is_meta for p in local.values()),
        }
        report = {
            "rank": trainer.global_rank, "world": trainer.world_size, "rss_before": self.before, "peak": peak,
            "local_numel": sum(p.numel() for p in local.values()), "total_numel": self.total, **values,
        }  # fmt: skip
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))
        raise Stop


def main(out: str, overrides: list[str]) -> None:
    from rsneo.train.config import load_config
    from rsneo.train.run import build_run

    warnings.simplefilter("ignore")
    run = build_run(load_config([*overrides, f"out_dir={out}"]))
    assert all(p.is_meta for p in run.module.model.parameters())  # nothing allocated yet
    total = sum(p.numel() for p in run.module.model.parameters())
    run.trainer.callbacks.append(Inspect(Path(out), rss_bytes(), total))
    with contextlib.suppress(Stop):
        run.trainer.fit(run.module, datamodule=run.datamodule)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], sys.argv[2:])
