"""Streaming shards: sample by sample, split across ranks and DataLoader workers without duplicates or gaps,
a bounded shuffle buffer, and a mid-epoch resume that continues the uninterrupted stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

from rsneo.data.sample import Sample
from rsneo.data.shards import ShardDataset, prepare_shards, shuffle_order, worker_batches

WORKER = Path(__file__).with_name("shard_worker.py")
SIZES = (7, 12, 20, 22)  # uneven shards: 61 samples, not a multiple of 4 slots


def _whole(item: list[Sample]) -> list[Sample]:
    return item


@pytest.fixture(scope="module")
def uneven_shards(flood_tiles, tmp_path_factory) -> Path:
    """Real Sen1Floods11 tiles (S2 + S1 + mask) re-cut into four shards of uneven sizes."""
    samples = flood_tiles[: sum(SIZES)]
    ends = np.cumsum(SIZES)
    chunks = [samples[end - size : end] for size, end in zip(SIZES, ends, strict=True)]
    out = tmp_path_factory.mktemp("uneven") / "shards"
    prepare_shards(chunks, _whole, out, 1, progress=False)
    return out


def _all_keys(folder: Path) -> list[str]:
    return [s.name for s in ShardDataset(folder)]


def test_shuffle_buffer_permutes_and_never_holds_more_than_its_size():
    order = shuffle_order(50, 8, np.random.default_rng(0))
    assert sorted(order) == list(range(50)) and order != list(range(50))
    # the k-th yielded sample was read at most `buffer` samples earlier: what bounds memory
    assert all(i <= k + 7 for k, i in enumerate(order))


def test_stream_decodes_only_a_buffer_of_samples_ahead(uneven_shards):
    decoded = []
    dataset = ShardDataset(uneven_shards, shuffle=True, buffer=5, transform=lambda s: decoded.append(s) or s)
    ahead = []
    for count, _ in enumerate(dataset, start=1):
        ahead.append(len(decoded) - count)  # decoded but not yet yielded
    assert count == sum(SIZES)
    assert 0 <= max(ahead) <= 5 and len(decoded) == count  # every sample decoded exactly once


def test_workers_of_one_process_split_the_pass_without_duplicates_or_gaps(uneven_shards):
    keys = _all_keys(uneven_shards)
    assert len(keys) == len(set(keys)) == sum(SIZES)
    for world in (1, 3):
        seen = []
        for rank in range(world):
            dataset = ShardDataset(uneven_shards, shuffle=True, seed=2, buffer=4, rank=rank, world=world)
            seen += [s.name for s in DataLoader(dataset, batch_size=None, num_workers=2)]
        assert sorted(seen) == sorted(keys)
    shuffled = [s.name for s in ShardDataset(uneven_shards, shuffle=True, seed=2, buffer=4)]
    assert shuffled != keys and sorted(shuffled) == sorted(keys)


def test_worker_batch_counts_follow_the_dataloader_round_robin():
    assert [worker_batches(5, w, 2) for w in (0, 1)] == [3, 2]
    assert [worker_batches(1, w, 3) for w in (0, 1, 2)] == [1, 0, 0]
    assert worker_batches(0, 0, 1) == 0


@pytest.mark.slow
def test_two_gloo_ranks_with_two_workers_each_split_and_resume_the_stream(uneven_shards, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=0",
        "--rdzv_backend=c10d", "--rdzv_endpoint=localhost:0", str(WORKER), str(uneven_shards), str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    keys = _all_keys(uneven_shards)
    epoch = ranks[0]["epoch"] + ranks[1]["epoch"]
    assert sorted(epoch) == sorted(keys)  # no duplicates, no gaps over 2 ranks x 2 workers
    assert len(ranks[0]["epoch"]) in (30, 31) and set(ranks[0]["epoch"]).isdisjoint(ranks[1]["epoch"])
    for rank in ranks:
        assert len(rank["whole"]) == 12 and all(len(b) == 3 for b in rank["whole"])
        assert rank["resumed"] == rank["whole"][5:]  # mid-epoch resume, across the pass boundary too
    second_pass = [k for b in ranks[0]["whole"] for k in b][len(ranks[0]["epoch"]) :]
    assert second_pass and set(second_pass) <= set(ranks[0]["epoch"]) | set(ranks[1]["epoch"])


def test_resume_in_process_matches_with_workers(uneven_shards):
    def batches(start: int, count: int) -> list[list[str]]:
        dataset = ShardDataset(uneven_shards, shuffle=True, seed=4, buffer=3, repeat=True, batch_size=4)
        dataset.start_batch = start
        loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=lambda b: [s.name for s in b])
        return list(islice(loader, count))

    whole = batches(0, 20)  # 80 samples: more than one pass of 61
    assert batches(13, 7) == whole[13:]
