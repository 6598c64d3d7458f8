"""Run by `torchrun --nproc_per_node 2` from test_ddp.py: train a few steps with DDP (gloo, CPU) and save,
per rank, the final weights and a fingerprint of every batch the rank saw."""

from __future__ import annotations

import faulthandler
import sys
import warnings
from pathlib import Path

import lightning as L
import torch


class BatchFingerprints(L.Callback):
    def __init__(self) -> None:
        self.seen: list[list[int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(batch.inputs.input_ids.sum(dim=1).tolist())  # one number per document


def main(out: str, overrides: list[str]) -> None:
    from rsneo.train.config import load_config
    from rsneo.train.run import build_run

    warnings.simplefilter("ignore")
    run = build_run(load_config([*overrides, f"out_dir={out}"]))
    fingerprints = BatchFingerprints()
    run.trainer.callbacks.append(fingerprints)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    state = {k: v.detach().clone() for k, v in run.module.state_dict().items()}
    rank = run.trainer.global_rank
    torch.save(
        {"state": state, "seen": fingerprints.seen, "world": run.trainer.world_size},
        Path(out) / f"rank{rank}.pt",
    )


if __name__ == "__main__":
    faulthandler.dump_traceback_later(300, exit=True)  # a hang shows where, in the test's failure message
    main(sys.argv[1], sys.argv[2:])
