"""Start-up time of `rsneo --help`, `rsneo <command> --help`, and of `segment` on a small raster.

Each measurement is a fresh process (as a user's shell starts it); the median of `--repeat` runs is printed
with the heavy modules the help imported (none should be: the commands import them in their bodies).
The `segment` line is the whole run on a 128x128 crop of the bundled Sentinel-2 sample, split into the time to
import the segment stack and the rest (model loading, one window, writing the products).

Usage: .venv/bin/python benchmarks/startup.py [--repeat 5] [--no-segment]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = (
    "", "sensors", "info", "segment", "change", "ask", "prepare", "train", "export", "convert", "demo",
)  # fmt: skip
HEAVY = ("torch", "rasterio", "numpy", "lightning", "transformers", "hydra", "geopandas", "pandas")
PROBE = """
import contextlib, io, sys
from rsneo.cli import run_app
with contextlib.redirect_stdout(io.StringIO()):
    run_app(sys.argv[1:] + ["--help"])
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""
SAMPLE = REPO / "rsneo/assets/samples/sen1floods11/S2/Spain_7370579_S2Hand.tif"


def timed(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 2):
        sys.exit(f"{' '.join(argv)} failed:\n{done.stderr}")
    return elapsed, done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def help_times(repeat: int) -> None:
    print(f"{'command':<24} {'median s':>9} {'max s':>7}  heavy modules imported")
    for command in COMMANDS:
        argv = [sys.executable, "-c", PROBE.format(heavy=HEAVY), *command.split()]
        runs = [timed(argv) for _ in range(repeat)]
        times = [t for t, _ in runs]
        label = f"rsneo {command} --help".replace("  ", " ")
        print(f"{label:<24} {statistics.median(times):>9.2f} {max(times):>7.2f}  {runs[-1][1] or '-'}")


def segment_time() -> None:
    import rasterio
    from rasterio.windows import Window

    with tempfile.TemporaryDirectory() as tmp:
        crop = Path(tmp) / "S2_MSIL1C_crop.tif"
        with rasterio.open(SAMPLE) as src:
            window = Window(0, 0, 128, 128)
            profile = src.profile | {
                "width": 128, "height": 128, "transform": src.window_transform(window), "tiled": False,
            }  # fmt: skip
            with rasterio.open(crop, "w", **profile) as dst:
                dst.write(src.read(window=window))
                dst.descriptions = src.descriptions
        imports, _ = timed([sys.executable, "-c", "import rsneo.predict.segment, rsneo.heads.system"])
        whole, _ = timed(
            [sys.executable, "-m", "rsneo.cli", "segment", str(crop), "--classes", "water,land",
             "--out", str(Path(tmp) / "out"), "--window", "128", "--overlap", "0"]
        )  # fmt: skip
    print(f"\nrsneo segment, 128x128 raster: {whole:.2f} s in all; importing its modules {imports:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-segment", action="store_true")
    args = parser.parse_args()
    help_times(args.repeat)
    if not args.no_segment:
        segment_time()


if __name__ == "__main__":
    main()
