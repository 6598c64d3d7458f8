"""`rsneo segment` with 1, 2 and the policy's threads (rsneo.model.threads), on an idle and a loaded machine.

A `--size`^2 13-band Sentinel-2 GeoTIFF is built from the real Sen1Floods11 chip (mirrored tiles, as
benchmarks/inference.py does) in a temporary folder. Each thread setting runs the whole command in its own
process, interleaved (1, 2, policy, 1, 2, policy, ...) so a change in the machine's other work hits all
settings alike. `--load N` starts N busy-loop processes for the measurement (and waits `--warm` seconds
for the 1-minute load average to see them, so the policy reads it as a real user's run would). Printed per
run: wall and CPU seconds (user + system of that child, from os.wait4), its peak RSS and the load average
before it started; then the medians per setting.

`--overlap` instead compares the engine's reader and writer threads on and off (RSNEO_OVERLAP=1 / 0) at 1
and 2 threads, interleaved the same way: with a core to spare, reading and writing hide behind the model.

`--memory` instead runs the policy's setting at each of `--sizes` and prints the peak RSS ratio (issue #25
item 4: at most 1.25x from 1024^2 to 4096^2).

Usage: .venv/bin/python benchmarks/threads.py [--size 1024] [--repeats 2] [--load 0] [--warm 60] [--overlap]
       .venv/bin/python benchmarks/threads.py --memory [--sizes 1024 4096]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from inference import CLASSES, make_raster  # noqa: E402  (the benchmarks share one raster builder)
from processes import run_rsneo  # noqa: E402

POLICY = "policy"


def busy_loop() -> None:
    while True:
        pass


def policy_count() -> int:
    """What the policy would choose now (the command resolves it again at its start)."""
    from rsneo.model.threads import policy_threads

    return policy_threads()


def run_segment(raster: Path, out: Path, threads: str, env: dict[str, str] | None = None) -> dict:
    """One `rsneo segment` in its own process; wall, CPU (user + system) and peak RSS of that process."""
    args = ["segment", str(raster), "--classes", CLASSES, "--out", str(out), "--json"]
    chosen = threads if threads != POLICY else f"{POLICY}={policy_count()}"
    return {"threads": chosen, **run_rsneo(args if threads == POLICY else [*args, "--threads", threads], env)}


def with_load(n: int, warm: float):
    """Start `n` busy-loop processes and wait `warm` seconds for the load average to rise."""
    workers = [multiprocessing.Process(target=busy_loop, daemon=True) for _ in range(n)]
    for w in workers:
        w.start()
    if n:
        time.sleep(warm)
    return workers


def compare_threads(args: argparse.Namespace, folder: Path) -> None:
    raster = folder / f"s2_{args.size}.tif"
    make_raster(raster, args.size)
    settings = ["1 overlap", "1 serial", "2 overlap", "2 serial"] if args.overlap else ["1", "2", POLICY]
    workers = with_load(args.load, args.warm)
    rows: list[dict] = []
    try:
        for rep in range(args.repeats):
            for setting in settings:
                threads, _, mode = setting.partition(" ")
                env = {"RSNEO_OVERLAP": "0" if mode == "serial" else "1"}
                row = run_segment(raster, folder / f"out_{setting.replace(' ', '_')}_{rep}", threads, env)
                row["setting"] = setting
                rows.append(row)
                print(f"  {setting:>6} ({row['threads']}): {row['wall']:6.1f} s wall {row['cpu']:6.1f} s CPU "
                      f"{row['rss_mb']:6.0f} MB, load average {row['load']:.2f}", flush=True)  # fmt: skip
    finally:
        for w in workers:
            w.terminate()
    print(f"segment {args.size}^2 13-band, {args.load} busy-loop process(es), {os.cpu_count()} cores, "
          f"{len(os.sched_getaffinity(0))} available; medians of {args.repeats}:")  # fmt: skip
    for setting in settings:
        mine = [r for r in rows if r["setting"] == setting]
        wall = statistics.median(r["wall"] for r in mine)
        cpu = statistics.median(r["cpu"] for r in mine)
        chosen = ",".join(sorted({r["threads"] for r in mine}))
        load = statistics.mean(r["load"] for r in mine)
        print(f"| {args.size} | {args.load} | {setting} ({chosen}) | {wall:.1f} | {cpu:.1f} | {load:.2f} |")


def compare_memory(args: argparse.Namespace, folder: Path) -> None:
    peaks = {}
    for size in args.sizes:
        raster = folder / f"s2_{size}.tif"
        make_raster(raster, size)
        row = run_segment(raster, folder / f"out_{size}", args.memory_threads)
        peaks[size] = row["rss_mb"]
        print(f"| {size} | {row['threads']} | {row['wall']:.1f} | {row['cpu']:.1f} | {row['rss_mb']:.0f} | "
              f"{row['load']:.2f} |", flush=True)  # fmt: skip
        raster.unlink()
    first, last = args.sizes[0], args.sizes[-1]
    print(f"peak RSS {last}^2 / {first}^2: {peaks[last] / peaks[first]:.2f}x")


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--load", type=int, default=0, help="busy-loop processes during the measurement")
    parser.add_argument("--warm", type=float, default=60.0, help="seconds for the load average to rise")
    parser.add_argument("--overlap", action="store_true", help="reader/writer threads on and off")
    parser.add_argument("--memory", action="store_true", help="peak RSS at each of --sizes")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--memory-threads", default=POLICY)
    parser.add_argument("--keep", type=Path, help="build rasters and outputs here instead of a temp folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rsneo-threads-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        (compare_memory if args.memory else compare_threads)(args, folder)


if __name__ == "__main__":
    main()
