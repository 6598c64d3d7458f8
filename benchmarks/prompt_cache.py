"""What the prompt cache saves (issue #25 item 3): `rsneo segment` with an empty cache against a filled one.

The bundled model is installed with the package, so its prompt vectors live in the user cache folder
(rsneo.heads.prompt_cache). Each run here is the whole command in a fresh process, `--threads 1`, on the
bundled Sentinel-2 sample (256 x 512, 13 bands) with the demo's class names, and its own
XDG_CACHE_HOME: "cold" is an empty one (every trained class name and synonym goes through the backbone, then
is stored), "warm" one that a previous run filled (only the lookup and the typed names that are new). Cold and
warm alternate `--repeats` times; CPU is user + system of the child (os.wait4), with the 1-minute load
average.

Usage: .venv/bin/python benchmarks/prompt_cache.py [--repeats 3] [--classes "water, land"]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from processes import run_rsneo  # noqa: E402  (the benchmarks share one measured run)


def run_segment(raster: Path, out: Path, classes: str, cache: Path) -> dict:
    """One whole `rsneo segment` in a fresh process, one thread, with its own user cache folder."""
    args = ["segment", str(raster), "--classes", classes, "--out", str(out), "--threads", "1", "--json"]
    return run_rsneo(args, env={"XDG_CACHE_HOME": str(cache)})


def main() -> None:
    from rsneo.demo import bundled_samples

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--classes", default="water, land")
    args = parser.parse_args()
    raster = bundled_samples().sentinel2
    cpu: dict[str, list[float]] = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        warm_cache = folder / "warm_cache"
        run_segment(raster, folder / "fill", args.classes, warm_cache)  # fills the warm cache
        for rep in range(args.repeats):
            for state in ("cold", "warm"):
                cache = folder / f"cold_cache_{rep}" if state == "cold" else warm_cache
                row = run_segment(raster, folder / f"out_{state}_{rep}", args.classes, cache)
                cpu[state].append(row["cpu"])
                print(f"{state}  wall {row['wall']:6.2f} s  CPU {row['cpu']:6.2f} s  load {row['load']:.1f}",
                      flush=True)  # fmt: skip
    cold, warm = statistics.median(cpu["cold"]), statistics.median(cpu["warm"])
    print(f"{raster.name}, classes {args.classes!r}, threads 1: median CPU cold {cold:.2f} s, "
          f"warm {warm:.2f} s, saved {cold - warm:.2f} s per run")  # fmt: skip


if __name__ == "__main__":
    main()
