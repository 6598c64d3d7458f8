"""Run by `torchrun --nproc_per_node 2` from test_shards.py: each rank streams a shard folder through a
DataLoader with 2 workers (gloo process group) and saves the keys it saw, as JSON."""

from __future__ import annotations

import json
import sys
from itertools import islice
from pathlib import Path

import torch.distributed as dist
from torch.utils.data import DataLoader

from rsneo.data.shards import ShardDataset


def keys(batch: list) -> list[str]:
    return [s.name for s in batch]


def main(folder: str, out: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()

    def stream(start_batch: int = 0, batches: int | None = None, **options) -> list[list[str]]:
        dataset = ShardDataset(folder, shuffle=True, seed=1, buffer=4, batch_size=3, **options)
        dataset.start_batch = start_batch
        loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=keys)
        return list(islice(loader, batches))

    result = {
        # one pass, no repeat; rank and workers come from the process group
        "epoch": [k for batch in stream() for k in batch],
        "whole": stream(batches=12, repeat=True),  # crosses into the second pass
        "resumed": stream(start_batch=5, batches=7, repeat=True),
    }
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
