"""Sliding-window segmentation speed and memory: megapixels per second and peak RSS for growing rasters.

Rasters of 2k, 4k, 8k and 16k pixels square are made by tiling real imagery (the rasterio sample, a
Landsat-7 RGB excerpt, mirrored so seams stay natural) into tiled GeoTIFFs, written strip by strip. Each
size is segmented into a class-map COG + confidence COG (`SegmentationPredictor` through `predict_raster`,
i.e. `rsneo segment` without the polygon/QGIS steps, whose cost depends on how fragmented the map is) by a
tiny random rsneo system, each in its own process so that its peak RSS is its own. The run checks the
issue's budget: peak memory at 16k within 1.25x of that at 4k.

`--predictor pointwise` swaps the model for a per-pixel rule (red-band brightness) to measure the engine
alone: windowed reads, blending, block writes and the COG conversion.

Usage: .venv/bin/python benchmarks/inference.py [--sizes 2048 4096 8192 16384] [--device cpu|cuda]
       [--window 256] [--batch 8] [--predictor model|pointwise]
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RSNEO_SHARED", REPO.parent / "shared")) / "data"
SOURCE = SHARED / "rasters" / "RGB.byte.tif"


def make_raster(path: Path, size: int) -> None:
    """A size x size 3-band GeoTIFF tiled from SOURCE (mirrored copies), written one strip at a time."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(SOURCE) as src:
        tile = src.read()  # (3, 718, 791)
        profile = {**src.profile, "width": size, "height": size, "tiled": True, "blockxsize": 512}
        profile.update(blockysize=512, compress="deflate", BIGTIFF="IF_SAFER")
    h, w = tile.shape[1:]
    row_tile = np.concatenate([tile, tile[:, :, ::-1]], axis=2)  # (3, h, 2w) mirrored pair
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, 512):
            rows = min(512, size - top)
            r = np.arange(top, top + rows) % (2 * h)
            r = np.where(r < h, r, 2 * h - 1 - r)  # mirror vertically
            c = np.arange(size) % (2 * w)
            dst.write(row_tile[:, r][:, :, c], window=Window(0, top, size, rows))


def brightness(pixels, valid):
    """The pointwise stand-in model: P(class k) from the red band, (B, 3, S, S) -> (B, 4, S, S)."""
    import numpy as np

    red = pixels[:, 0] / 255.0
    return np.stack([red, 1 - red, 0.5 * red, 0.5 * (1 - red)], axis=1)


def run_one(size: int, folder: Path, device: str, window: int, batch: int, predictor: str) -> dict:
    """Segment one raster in this process; returns megapixels per second and peak RSS."""
    import rasterio
    import torch

    from rsneo.heads.system import random_system
    from rsneo.io.cog import ClassLegend
    from rsneo.predict.bands import band_layout
    from rsneo.predict.segment import NONE_OF_THESE, SegmentationPredictor
    from rsneo.predict.sliding_window import RasterWindows, WindowPlan, predict_raster

    raster = folder / f"tiled_{size}.tif"
    names = ["water", "forest", "built-up"]
    if predictor == "model":
        system = random_system()
        system.model.to(device)
        system.segmentation.to(device)
        predict_fn = SegmentationPredictor(system, band_layout(raster), names)
    else:
        predict_fn = brightness
    legend = ClassLegend.from_names([*names, NONE_OF_THESE])
    out = folder / f"classes_{size}.tif"
    start = time.perf_counter()
    with rasterio.open(raster) as src:
        predict_raster(
            RasterWindows([src]), predict_fn, out, legend=legend, crs=src.crs, transform=src.transform,
            plan=WindowPlan(window, 32, batch), signature=f"bench{size}",
        )  # fmt: skip
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0
    return {
        "size": size,
        "megapixels": size * size / 1e6,
        "seconds": round(seconds, 2),
        "mp_per_s": round(size * size / 1e6 / seconds, 3),
        "peak_rss_mb": round(peak_mb, 1),
        "peak_gpu_mb": round(gpu_mb, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--predictor", choices=["model", "pointwise"], default="model")
    parser.add_argument(
        "--folder", type=Path, default=None, help="Keep the rasters here (default: a temp dir)."
    )
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # worker mode
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="rsneo_inference_"))
    folder.mkdir(parents=True, exist_ok=True)
    if args.one is not None:
        print(
            "RESULT"
            + json.dumps(run_one(args.one, folder, args.device, args.window, args.batch, args.predictor)),
            flush=True,
        )
        return
    results = []
    for size in args.sizes:
        raster = folder / f"tiled_{size}.tif"
        if not raster.exists():
            make_raster(raster, size)
        cmd = [sys.executable, __file__, "--one", str(size), "--folder", str(folder), "--device", args.device]
        cmd += ["--window", str(args.window), "--batch", str(args.batch), "--predictor", args.predictor]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT")), None)
        if line is None:
            print(done.stdout + done.stderr, file=sys.stderr)
            raise SystemExit(f"size {size} failed")
        result = json.loads(line[len("RESULT") :])
        results.append(result)
        print(
            f"{size:>6} px  {result['megapixels']:8.1f} MP  {result['seconds']:8.1f} s  "
            f"{result['mp_per_s']:7.3f} MP/s  peak RSS {result['peak_rss_mb']:7.1f} MB"
            + (f"  peak GPU {result['peak_gpu_mb']:.0f} MB" if args.device.startswith("cuda") else ""),
            flush=True,
        )
    by_size = {r["size"]: r for r in results}
    if 4096 in by_size and 16384 in by_size:
        ratio = by_size[16384]["peak_rss_mb"] / by_size[4096]["peak_rss_mb"]
        verdict = "within" if ratio <= 1.25 else "OVER"
        print(f"peak RSS 16k / 4k = {ratio:.3f} ({verdict} the 1.25x budget)")
    settings = {
        "device": args.device,
        "window": args.window,
        "batch": args.batch,
        "predictor": args.predictor,
    }
    print(json.dumps({**settings, "results": results}))


if __name__ == "__main__":
    main()
