"""CPU seconds per pair of `rsneo change`'s batch mode (issue #25 item 5: at most 0.5 CPU s per pair after the
first, for 256^2 pairs).

The pairs are real NAIP imagery (../shared/data/timeseries/naip_m4709963, 4 bands, 5 m in this copy):
`--pairs` windows of 256^2 cut at spread offsets from the 2009 and the 2020 image, written as GeoTIFFs (with
their georeference; the 2020 grid is 1 m off the 2009 one, so each later date is reprojected, as real pairs
often are) into before/ and after/ with matching names, so `rsneo change before after` pairs them by name.
Two whole commands run, each in its own fresh process with `--threads 1`, interleaved `--repeats` times: one
pair alone, and all of them. The cost of a pair after the first is (CPU(all) - CPU(one)) / (pairs - 1):
start-up, imports and model loading are paid once either way. CPU is user + system of the child
(os.wait4); the 1-minute load average before each run is printed with it.

Usage: .venv/bin/python benchmarks/batch_change.py [--pairs 100] [--repeats 2] [--model DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from processes import run_rsneo  # noqa: E402  (the benchmarks share one measured run)

NAIP = REPO.parent / "shared" / "data" / "timeseries" / "naip_m4709963"
DATES = ("m_4709963_se_14_1_20090818.tif", "m_4709963_se_14_1_20200831.tif")
SIDE = 256


def write_pairs(folder: Path, pairs: int, naip: Path = NAIP) -> tuple[Path, Path]:
    """`pairs` 256^2 windows of the two NAIP dates in folder/before and folder/after, named alike."""
    dirs = (folder / "before", folder / "after")
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    with rasterio.open(naip / DATES[0]) as src:
        height, width = src.height, src.width
    rng = np.random.default_rng(0)
    offsets = zip(rng.integers(0, height - SIDE, pairs), rng.integers(0, width - SIDE, pairs), strict=True)
    windows = [Window(int(c), int(r), SIDE, SIDE) for r, c in offsets]
    for date, out in zip(DATES, dirs, strict=True):
        with rasterio.open(naip / date) as src:
            for i, window in enumerate(windows):
                profile = src.profile | {
                    "width": SIDE, "height": SIDE, "transform": src.window_transform(window),
                    "driver": "GTiff", "tiled": False, "compress": "deflate",
                }  # fmt: skip
                with rasterio.open(out / f"tile_{i:03d}.tif", "w", **profile) as dst:
                    dst.write(src.read(window=window))
    return dirs


def run_change(before: Path, after: Path, out: Path, model: str | None) -> dict:
    """One whole `rsneo change` in a fresh process, one thread."""
    args = ["change", str(before), str(after), "--out", str(out), "--threads", "1", "--sensor", "naip"]
    return run_rsneo([*args, "--json", *(["--model", model] if model else [])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        before, after = write_pairs(folder / "many", args.pairs)
        first = sorted(before.glob("*.tif"))[0].name
        one = (before / first, after / first)
        cpu = {"one": [], "all": []}
        for rep in range(args.repeats):
            for name, (a, b) in (("one", one), ("all", (before, after))):
                row = run_change(a, b, folder / f"out_{name}_{rep}", args.model)
                cpu[name].append(row["cpu"])
                count = 1 if name == "one" else args.pairs
                print(f"{count:>3} pair(s)  wall {row['wall']:7.1f} s  CPU {row['cpu']:7.1f} s  "
                      f"load {row['load']:.1f}", flush=True)  # fmt: skip
        one_cpu, all_cpu = statistics.median(cpu["one"]), statistics.median(cpu["all"])
        per_pair = (all_cpu - one_cpu) / (args.pairs - 1)
        print(f"median CPU: one pair {one_cpu:.1f} s, {args.pairs} pairs {all_cpu:.1f} s; "
              f"per pair after the first {per_pair:.3f} CPU s (threads 1)")  # fmt: skip


if __name__ == "__main__":
    main()
