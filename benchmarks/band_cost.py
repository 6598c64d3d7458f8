"""What 13 Sentinel-2 bands cost against 3 (issue #25 item 1: at most 1.3x in CPU seconds with `fold` groups).

A `--size`^2 13-band L1C GeoTIFF is tiled from the real Sen1Floods11 chip (benchmarks/inference.py's
`make_raster`), and its RGB copy (B4, B3, B2, same grid and blocks) is written beside it. `rsneo segment`
runs on each in a fresh process with one thread, interleaved `--repeats` times, for every `--model` given
(the model's own band grouping, from its config: `fold` for the bundled model and any model trained with
`data.band_groups=fold`, `sensor` for one trained with `data.band_groups=sensor`). Printed: CPU seconds
(user + system of the child), wall, load, and the 13-band / RGB ratio of the medians per model.

Usage: .venv/bin/python benchmarks/band_cost.py [--size 2048] [--repeats 2] [--model DIR ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference import CLASSES, make_raster  # noqa: E402  (the benchmarks share one raster builder)
from processes import run_rsneo  # noqa: E402

RGB = ("B4", "B3", "B2")
RGB_OPTIONS = ["--sensor", "sentinel2_l1c", "--bands", ",".join(RGB)]  # three bands alone do not say which


def rgb_copy(src_path: Path, path: Path) -> None:
    """The B4, B3, B2 bands of `src_path` as a GeoTIFF of the same grid, blocks and compression."""
    with rasterio.open(src_path) as src:
        index = [src.descriptions.index(b) + 1 for b in RGB]
        profile = src.profile | {"count": len(RGB)}
        with rasterio.open(path, "w", **profile) as dst:
            for i, name in enumerate(RGB):
                dst.set_band_description(i + 1, name)
            for _, window in src.block_windows(1):
                dst.write(src.read(index, window=window), window=window)


def band_groups(model: str | None) -> str:
    if model is None:
        from rsneo.demo import BUNDLED_MODEL

        model = str(BUNDLED_MODEL)
    return json.loads((Path(model) / "config.json").read_text()).get("band_groups") or "sensor"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", action="append", default=None, help="model folder (default: bundled)")
    args = parser.parse_args()
    models = args.model or [None]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        full, rgb = folder / "s2_13.tif", folder / "s2_rgb.tif"
        make_raster(full, args.size)
        rgb_copy(full, rgb)
        cpu: dict[tuple[int, str], list[float]] = {}
        for rep in range(args.repeats):
            for m, model in enumerate(models):
                for name, raster, bands in (("13-band", full, []), ("RGB", rgb, RGB_OPTIONS)):
                    out = folder / f"out_{m}_{name}_{rep}"
                    chosen = ["--model", model] if model else []
                    command = ["segment", str(raster), "--classes", CLASSES, "--out", str(out), *bands,
                               "--threads", "1", "--json", *chosen]  # fmt: skip
                    row = run_rsneo(command)
                    cpu.setdefault((m, name), []).append(row["cpu"])
                    print(f"{model or 'bundled'} ({band_groups(model)}) {name:>7}: CPU {row['cpu']:6.1f} s  "
                          f"wall {row['wall']:6.1f} s  load {row['load']:.1f}", flush=True)  # fmt: skip
        for m, model in enumerate(models):
            full_cpu, rgb_cpu = statistics.median(cpu[m, "13-band"]), statistics.median(cpu[m, "RGB"])
            print(f"{model or 'bundled'} ({band_groups(model)}), {args.size}^2, threads 1: 13-band "
                  f"{full_cpu:.1f} CPU s, RGB {rgb_cpu:.1f}, ratio {full_cpu / rgb_cpu:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
