"""Chip loading speed: chips per second and peak memory, from COGs and from prepared shards.

Sources: the NAIP series in ../shared/data (10 COGs, 4 bands, ~934x724 each).
- `rasterio loop`: the baseline, a plain rasterio windowed read per chip, one open dataset per file, giving
  what rsneo gives: float32 with NaN where nodata.
- `rsneo read`: `rsneo.io.read.read_source` on a window of the same files (the scene reader's hot path); its
  first chip is checked equal to the plain loop's (outside the clock).
- `torchgeo random` / `grid`: `SensorRaster` with `RandomGeoSampler` / `GridGeoSampler` in a DataLoader.
- `shards in order` / `shards shuffled`: `ShardDataset` over the series prepared as 64-pixel tiles
  (WebDataset tars of `Sample`s); `shards over http`: the same folder streamed from an HTTP server on
  127.0.0.1 (a thread of the measuring process, so its CPU time is counted too).
Each configuration runs in its own process so its peak RSS (including DataLoader workers) is its own. The
clock runs around the loop only; set-up (imports, opening files, building datasets and loaders) is reported
separately. DataLoader worker start-up happens inside the loop, as it does in training. CPU seconds of the
loop (user + sys of the process and its finished workers) are printed beside, with the 1-minute load average;
each process runs torch with one intra-op thread (GDAL's default of one thread per read).

Usage: .venv/bin/python benchmarks/loading.py [--chips 512] [--size 64] [--workers 0 1 2] [--rounds 3]
       [--kinds "rasterio loop" "rsneo read" "torchgeo random" ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
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


def _plain_chip(src, window, nodata: float | None):
    """What a user writes with rasterio alone for the same chip: float32, NaN where nodata."""
    import numpy as np

    chip = src.read(window=window, out_dtype="float32")
    if nodata is not None:
        chip[chip == np.float32(nodata)] = np.nan
    return chip


def run_one(kind: str, chips: int, size: int, workers: int, shards: str) -> dict:
    """Load `chips` chips one way; returns chips, the seconds of the loop alone and of the set-up before it.

    Set-up (imports, opening files, building datasets, samplers and loaders) is timed separately; the clock
    of the loop starts just before the first chip is asked for.
    """
    import numpy as np
    import torch
    from rasterio.windows import Window
    from torch.utils.data import DataLoader

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    set_up = time.perf_counter()
    count = 0
    windows = _windows(chips, size)
    if kind == "rasterio loop":
        import rasterio

        handles = {path: rasterio.open(path) for path in sorted({w[0] for w in windows})}
        nodata = {path: src.nodata for path, src in handles.items()}
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        for path, row, col in windows:
            _plain_chip(handles[path], Window(col, row, size, size), nodata[path])
            count += 1
    elif kind == "rsneo read":
        from rsneo.io.read import open_source, read_source

        sources = {path: open_source(path) for path in sorted({w[0] for w in windows})}
        path, row, col = windows[0]  # same dtype and content as the plain loop (outside the clock)
        import rasterio

        with rasterio.open(path) as src:
            plain = _plain_chip(src, Window(col, row, size, size), src.nodata)
        got = read_source(sources[path], sources[path].grid.window(Window(col, row, size, size)))
        np.testing.assert_array_equal(got, plain)
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        for path, row, col in windows:
            source = sources[path]
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
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        for batch in loader:
            count += batch["image"].shape[0]
            if count >= chips:
                break
    else:
        from rsneo.data.shards import ShardDataset

        folder = _serve(Path(shards)) if kind.endswith("http") else shards
        ds = ShardDataset(folder, shuffle=kind.endswith("shuffled"), buffer=64)
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        loader = iter(DataLoader(ds, batch_size=None, num_workers=workers))
        for sample in loader:
            count += sample.scene.sizes["time"]  # frames: one tile holds every date
            if count >= chips:
                break
        del loader  # workers end here, so their CPU time is counted
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_start
    return {"chips": count, "seconds": seconds, "set_up_seconds": start - set_up, "cpu_seconds": cpu}


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (DataLoader workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _serve(folder: Path) -> str:
    """Serve `folder`'s parent on 127.0.0.1 from a daemon thread (it ends with the measuring process)."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=folder.parent)
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/{folder.name}"


KINDS = ("rasterio loop", "rsneo read", "torchgeo random", "torchgeo grid", "shards in order")
KINDS += ("shards shuffled", "shards over http")


def _run(kind: str, workers: int, args: argparse.Namespace, shards: Path) -> dict:
    cmd = [sys.executable, __file__, "--one", f"{kind}|{workers}", "--chips", str(args.chips),
           "--size", str(args.size), "--shards", str(shards)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{kind} failed:\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chips", type=int, default=512)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), metavar="KIND")
    parser.add_argument("--rounds", type=int, default=1, help="Rounds, interleaved; medians")
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
        if any(k.startswith("shards") for k in args.kinds):
            from rsneo.data.recipes import RECIPES, tile_loader
            from rsneo.data.shards import prepare_shards

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                items = RECIPES["timeseries"].items(NAIP)
                prepare_shards(items, tile_loader("timeseries", args.size), shards, 1, progress=False)
        # one series of 10 dates -> many tiles; each sample is (10, 4, size, size): count frames as chips
        configs = [(k, 0) for k in args.kinds if k in ("rasterio loop", "rsneo read")]
        loaders = [k for k in args.kinds if k not in ("rasterio loop", "rsneo read")]
        configs += [(k, w) for k in loaders for w in args.workers]
        runs: dict[tuple[str, int], list[dict]] = {c: [] for c in configs}
        load = os.getloadavg()[0]
        for _ in range(args.rounds):  # interleaved, so a busy spell of the machine hits every configuration
            for kind, workers in configs:
                runs[kind, workers].append(_run(kind, workers, args, shards))
        print(f"{'source':<18} {'workers':>7} {'chips':>6} {'chips/s':>9} {'set-up s':>9} {'peak MiB':>9} "
              f"{'worker MiB':>10}")  # fmt: skip
        rates = {}
        for (kind, workers), results in runs.items():
            rate = statistics.median(r["chips"] / r["seconds"] for r in results)
            set_up = statistics.median(r["set_up_seconds"] for r in results)
            rates[kind, workers] = rate
            print(
                f"{kind:<18} {workers:>7} {results[0]['chips']:>6} {rate:>9.1f} {set_up:>9.2f} "
                f"{max(r['peak_mib'] for r in results):>9.0f} "
                f"{max(r['worker_peak_mib'] for r in results):>10.0f}"
            )
        ours = rates.get(("rsneo read", 0))
        for other in (("rasterio loop", 0), ("torchgeo random", 0)):
            if ours and other in rates:
                print(f"rsneo read / {other[0]} (0 workers): {ours / rates[other]:.2f}x")
        print(
            f"load average: {load:.2f} before, {os.getloadavg()[0]:.2f} after (2 cores shared: compare CPU s)"
        )
        print("CPU s of the loop (median; workers' included), chips per CPU s; torch 1 thread per process:")
        for (kind, workers), results in runs.items():
            cpu = statistics.median(r["cpu_seconds"] for r in results)
            print(
                f"  {kind} ({workers} workers): {cpu:.2f} CPU s, {results[0]['chips'] / cpu:,.0f} chips/CPU s"
            )
        print("chips: 4-band frames of size x size, float32 with NaN for nodata; a shard sample is a")
        print(f"10-date tile and counts 10 frames. chips/s: the loop alone, median of {args.rounds} rounds.")


if __name__ == "__main__":
    main()
