"""Chip loading speed: chips per second and peak memory, from COGs and from prepared shards.

Sources: the NAIP series in ../shared/data (10 COGs, 4 bands, ~934x724 each).
- `rasterio loop`: the baseline, a plain rasterio windowed read per chip, one open dataset per file.
- `rsneo read`: `rsneo.io.read.read_source` on a window of the same files (the scene reader's hot path).
- `torchgeo random` / `grid`: `SensorRaster` with `RandomGeoSampler` / `GridGeoSampler` in a DataLoader.
- `shards in order` / `shards shuffled`: `ShardDataset` over the series prepared as 64-pixel tiles.
Each configuration runs in its own process so its peak RSS (including DataLoader workers) is its own.

Usage: .venv/bin/python benchmarks/loading.py [--chips 512] [--size 64] [--workers 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RSNEO_SHARED", REPO.parent / "shared")) / "data"
NAIP = SHARED / "timeseries" / "naip_m4709963"
REGEX = r"m_\d+_se_\d+_\d_(?P<date>\d{8})\.tif"


def _windows(n: int, size: int, seed: int = 0) -> list[tuple[Path, int, int]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    files = sorted(NAIP.glob("*.tif"))
    picks = rng.integers(len(files), size=n)
    rows, cols = rng.integers(0, 700 - size, size=n), rng.integers(0, 900 - size, size=n)
    return [(files[f], int(r), int(c)) for f, r, c in zip(picks, rows, cols, strict=True)]


def run_one(kind: str, chips: int, size: int, workers: int, shards: str) -> dict:
    """Load `chips` chips one way; returns chips/s."""
    import torch
    from torch.utils.data import DataLoader

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    start = time.perf_counter()
    count = 0
    if kind == "rasterio loop":
        import rasterio

        handles: dict = {}
        for path, row, col in _windows(chips, size):
            src = handles.get(path) or handles.setdefault(path, rasterio.open(path))
            src.read(window=((row, row + size), (col, col + size)))
            count += 1
    elif kind == "rsneo read":
        from rasterio.windows import Window

        from rsneo.io.read import open_source, read_source

        sources: dict = {}
        for path, row, col in _windows(chips, size):
            source = sources.get(path) or sources.setdefault(path, open_source(path))
            read_source(source, source.grid.window(Window(col, row, size, size)))
            count += 1
    elif kind.startswith("torchgeo"):
        from torchgeo.datasets import stack_samples
        from torchgeo.samplers import GridGeoSampler, RandomGeoSampler

        from rsneo.data.datasets import SensorRaster

        ds = SensorRaster(NAIP, "naip", filename_regex=REGEX)
        sampler = (
            RandomGeoSampler(ds, size=size, length=chips)
            if kind.endswith("random")
            else GridGeoSampler(ds, size=size, stride=size)
        )
        loader = DataLoader(ds, sampler=sampler, batch_size=16, num_workers=workers, collate_fn=stack_samples)
        for batch in loader:
            count += batch["image"].shape[0]
            if count >= chips:
                break
    else:
        from rsneo.data.shards import ShardDataset

        ds = ShardDataset(shards, shuffle=kind.endswith("shuffled"), buffer=64)
        for sample in DataLoader(ds, batch_size=None, num_workers=workers):
            count += sample["image"].shape[0]  # frames: one tile holds every date
            if count >= chips:
                break
    seconds = time.perf_counter() - start
    return {"chips": count, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chips", type=int, default=512)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--shards", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind, workers = args.one.rsplit("|", 1)
        out = run_one(kind, args.chips, args.size, int(workers), args.shards)
        # VmHWM: this process's own peak (ru_maxrss would include the parent's at exec)
        status = Path("/proc/self/status").read_text().splitlines()
        hwm_kb = next(int(x.split()[1]) for x in status if x.startswith("VmHWM"))
        child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if int(workers) else 0
        print(json.dumps(out | {"peak_mib": hwm_kb / 1024, "worker_peak_mib": child_kb / 1024}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(tmp) / "shards"
        from rsneo.data.recipes import RECIPES
        from rsneo.data.shards import prepare_shards

        recipe = RECIPES["timeseries"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            items = recipe.items(NAIP, args.size)
            prepare_shards(items, recipe.load, shards, 1, progress=False)
        # one series of 10 dates -> many tiles; each sample is (10, 4, size, size): count frames as chips
        configs = [("rasterio loop", 0), ("rsneo read", 0)]
        for kind in ("torchgeo random", "torchgeo grid", "shards in order", "shards shuffled"):
            configs += [(kind, w) for w in args.workers]
        print(f"{'source':<18} {'workers':>7} {'chips':>6} {'chips/s':>9} {'peak MiB':>9} {'worker MiB':>10}")
        for kind, workers in configs:
            cmd = [sys.executable, __file__, "--one", f"{kind}|{workers}", "--chips", str(args.chips),
                   "--size", str(args.size), "--shards", str(shards)]  # fmt: skip
            result = json.loads(
                subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
            )
            rate = result["chips"] / result["seconds"]
            print(
                f"{kind:<18} {workers:>7} {result['chips']:>6} {rate:>9.1f} {result['peak_mib']:>9.0f} "
                f"{result['worker_peak_mib']:>10.0f}"
            )
        print("chips: 4-band frames of size x size; a shard sample is a 10-date tile and counts 10 frames")


if __name__ == "__main__":
    main()
