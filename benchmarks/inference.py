"""Where `rsneo segment` spends its time on a realistically sized multi-band raster; the engine's speed.

Default (`--mode segment`): the whole `rsneo segment` command (CLI entry point, bundled model, class map COG,
confidence COG, polygons, QML style, QGIS project) on a `--size` x `--size` 13-band Sentinel-2 GeoTIFF
(int16, tiled 512, deflate, nodata 0) built from the real Sen1Floods11 S2 chip in ../shared/data, mirrored
so seams stay natural. The run prints a profile summary: wall time per part (I/O: pixel reads, validity
masks, block/COG writes, the QGIS display stretch, polygons; and model compute, blending, start-up) and its
share of the command's wall time. The parts are timed in place (a clock around each call, negligible
overhead); `--cprofile N` also prints the N functions with the largest cumulative time under cProfile
(which inflates Python-heavy parts, so its percentages are only a guide to where to look).

`--mode engine`: the sliding-window engine alone (`predict_raster`) on growing rasters, each in its own
process so its peak RSS is its own, with a tiny random model or a per-pixel rule (`--predictor pointwise`);
checks that peak memory at 16k stays within 1.25x of that at 4k.

`--stand-in` swaps the model's forward pass for a per-pixel spectral rule (NDWI/NDVI), so the I/O of the
full-size raster can be timed in minutes on a CPU where the model would take half an hour.

`--threads N` (default 1) is passed to `rsneo segment --threads` (engine mode: set on torch); 0 leaves the
choice to rsneo's policy (rsneo.model.threads). The thread count that ran and the 1-minute load average
before and after are printed with the times: on a shared machine CPU seconds are the steady figure.

Usage: .venv/bin/python benchmarks/inference.py [--size 4096] [--threads 1] [--cprofile 25] [--stand-in]
       [--keep FOLDER]
       .venv/bin/python benchmarks/inference.py --mode engine [--sizes 2048 4096 8192 16384]
       [--predictor model|pointwise] [--device cpu|cuda] [--window 256] [--batch 8]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RSNEO_SHARED", REPO.parent / "shared")) / "data"
S2_CHIP = SHARED / "sen1floods11" / "S2" / "Spain_7370579_S2Hand.tif"
CLASSES = "water,forest,built-up,cropland"


def make_raster(path: Path, size: int, source: Path = S2_CHIP, block: int = 512) -> None:
    """A size x size GeoTIFF tiled from `source` (mirrored copies, all bands), tiled, deflate, by strips.

    The band descriptions, nodata and the source's pixel size and origin are kept, so sensor detection and
    areas behave as on the real scene.
    """
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(source) as src:
        tile = src.read()  # (bands, h, w)
        descriptions = src.descriptions
        profile = {**src.profile, "width": size, "height": size, "tiled": True, "blockxsize": block}
        profile.update(blockysize=block, compress="deflate", BIGTIFF="IF_SAFER")
    profile.pop("interleave", None)  # GDAL's default for a multi-band tiled GeoTIFF: pixel interleaved
    h, w = tile.shape[1:]
    cols = np.arange(size) % (2 * w)
    cols = np.where(cols < w, cols, 2 * w - 1 - cols)  # mirror horizontally
    with rasterio.open(path, "w", **profile) as dst:
        for i, name in enumerate(descriptions):
            dst.set_band_description(i + 1, name or "")
        for top in range(0, size, block):
            rows = np.arange(top, min(top + block, size)) % (2 * h)
            rows = np.where(rows < h, rows, 2 * h - 1 - rows)  # mirror vertically
            dst.write(tile[:, rows][:, :, cols], window=Window(0, top, size, len(rows)))


# ---- the whole command, with a clock around each part -------------------------------------------------

# part -> (module, attribute path) of the callable timed as that part. Nested parts are subtracted from
# their parents (a window read contains its validity mask).
PARTS: dict[str, tuple[str, str]] = {
    "I/O: pixel reads": ("rsneo.io.windows", "RasterWindows.read"),
    "I/O: validity masks": ("rsneo.io.windows", "_window_valid"),
    "I/O: block writes": ("rsneo.io.cog", "CogBlockWriter.write"),
    "I/O: flushes (resume points)": ("rsneo.io.cog", "CogBlockWriter.flush"),
    "I/O: COG conversion": ("rsneo.io.cog", "CogBlockWriter.finish"),
    "I/O: display stretch (QGIS)": ("rsneo.io.qgis", "raster_display"),
    "I/O: polygons (GeoPackage)": ("rsneo.io.vector", "write_class_polygons"),
    "model compute": ("rsneo.predict.maps.segmentation", "SegmentationPredictor.__call__"),
    "load model": ("rsneo.cli.products", "_load"),
}
NESTED = {"I/O: validity masks": "I/O: pixel reads"}


def _instrument(totals: dict[str, float], cpu: dict[str, float]) -> None:
    """Wrap each part's callable with clocks adding its wall time to `totals` and the process's CPU time to
    `cpu` (outermost call only). CPU time shows the work itself on a busy machine, where wall time waits."""
    import importlib

    for part, (module_name, attr) in PARTS.items():
        owner = importlib.import_module(module_name)
        *path, name = attr.split(".")
        for step in path:
            owner = getattr(owner, step)
        original = getattr(owner, name)
        depth = [0]

        def timed(*args, __original=original, __part=part, __depth=depth, **kwargs):
            __depth[0] += 1
            start, start_cpu = time.perf_counter(), time.process_time()
            try:
                return __original(*args, **kwargs)
            finally:
                __depth[0] -= 1
                if __depth[0] == 0:
                    totals[__part] += time.perf_counter() - start
                    cpu[__part] += time.process_time() - start_cpu

        setattr(owner, name, functools.wraps(original)(timed))


def spectral_rule(self, pixels, valid):
    """A stand-in for the model (`--stand-in`): class probabilities from NDWI and NDVI of Sentinel-2 bands
    B3, B4, B8, (B, 13, S, S) -> (B, 5, S, S), so the I/O of a large raster can be timed in minutes."""
    import numpy as np

    green, red, nir = pixels[:, 2], pixels[:, 3], pixels[:, 7]
    ndwi = (green - nir) / np.maximum(green + nir, 1.0)
    ndvi = (nir - red) / np.maximum(nir + red, 1.0)
    logits = np.stack([ndwi, ndvi - 0.4, 0.2 - np.abs(ndvi - 0.15), 0.1 - np.abs(ndvi - 0.3), ndwi * 0], 1)
    odds = np.exp(10.0 * logits)
    return (odds / odds.sum(1, keepdims=True)).astype(np.float32)


def run_segment(
    raster: Path, out: Path, window: int, batch: int, cprofile: int, stand_in: bool, threads: int = 1
) -> dict:
    """Run `rsneo segment` in this process; returns the wall time of each part and of the whole command, the
    thread count it ran with and the load average before and after."""
    load_before = os.getloadavg()[0]
    start, start_cpu = time.perf_counter(), time.process_time()
    from rsneo.cli.app import app

    if stand_in:
        from rsneo.predict.maps.segmentation import SegmentationPredictor

        SegmentationPredictor.__call__ = spectral_rule

    totals: dict[str, float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    _instrument(totals, cpu)
    args = ["segment", str(raster), "--classes", CLASSES, "--out", str(out)]
    args += ["--window", str(window), "--batch", str(batch)]
    args += ["--threads", str(threads)] if threads else []
    profiler = None
    if cprofile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        app(args, standalone_mode=False)
    finally:
        if profiler is not None:
            profiler.disable()
    wall, wall_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    for part, parent in NESTED.items():
        totals[parent] -= totals[part]
        cpu[parent] -= cpu[part]
    if profiler is not None:
        import pstats

        print(f"--- cProfile: top {cprofile} by cumulative time (inflated by profiling) ---")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(cprofile)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    import torch

    return {
        "threads": torch.get_num_threads(),
        "load": [load_before, os.getloadavg()[0]],
        "wall_s": wall,
        "cpu_s": wall_cpu,
        "parts": dict(totals),
        "cpu": dict(cpu),
        "peak_rss_mb": peak_mb,
    }


def print_summary(result: dict, size: int, bands: int) -> None:
    wall, parts, cpu = result["wall_s"], result["parts"], result["cpu"]
    print(
        f"rsneo segment, {size} x {size} px, {bands} bands: {wall:.1f} s wall, {result['cpu_s']:.1f} s CPU, "
        f"peak RSS {result['peak_rss_mb']:.0f} MB; {result['threads']} thread(s), load average "
        f"{result['load'][0]:.1f} before, {result['load'][1]:.1f} after"
    )
    print(f"{'part':<32} {'wall s':>8} {'share':>7} {'CPU s':>8} {'share':>7}")
    rows = [(part, parts.get(part, 0.0), cpu.get(part, 0.0)) for part in PARTS]
    rows.append(
        ("other (blending, start-up, ...)", wall - sum(parts.values()), result["cpu_s"] - sum(cpu.values()))
    )
    io = [sum(r[i] for r in rows if r[0].startswith("I/O")) for i in (1, 2)]
    for part, seconds, cpu_s in [*rows, ("I/O total", *io)]:
        print(f"{part:<32} {seconds:8.2f} {seconds / wall:7.1%} {cpu_s:8.2f} {cpu_s / result['cpu_s']:7.1%}")
    verdict = "under" if io[0] / wall < 0.10 else "OVER"
    print(f"I/O share of wall time: {io[0] / wall:.1%} ({verdict} the 10% budget)")


def segment_main(args: argparse.Namespace) -> None:
    import rasterio

    folder = args.keep or Path(tempfile.mkdtemp(prefix="rsneo_inference_"))
    folder.mkdir(parents=True, exist_ok=True)
    raster = folder / f"s2_{args.size}.tif"
    if not raster.exists():
        began = time.perf_counter()
        make_raster(raster, args.size)
        print(f"built {raster} in {time.perf_counter() - began:.1f} s (not part of the timing)")
    with rasterio.open(raster) as src:
        bands = src.count
    out = folder / f"out_{os.getpid()}"
    result = run_segment(raster, out, args.window, args.batch, args.cprofile, args.stand_in, args.threads)
    if args.stand_in:
        print("--stand-in: model compute is a per-pixel spectral rule; the I/O times are the point here")
    print_summary(result, args.size, bands)
    print(json.dumps({"size": args.size, "bands": bands, **result}))


# ---- the engine alone, growing sizes ------------------------------------------------------------------


def brightness(pixels, valid):
    """The pointwise stand-in model: P(class k) from the first band, (B, bands, S, S) -> (B, 4, S, S)."""
    import numpy as np

    first = pixels[:, 0]
    x = (first - first.min()) / max(float(first.max() - first.min()), 1.0)
    return np.stack([x, 1 - x, 0.5 * x, 0.5 * (1 - x)], axis=1)


def run_engine(
    size: int, folder: Path, device: str, window: int, batch: int, predictor: str, threads: int = 1
) -> dict:
    """Segment one raster with `predict_raster` in this process; returns megapixels/s and peak RSS."""
    import rasterio
    import torch

    from rsneo.data.frames import band_layout
    from rsneo.heads.segmentation import NONE_OF_THESE
    from rsneo.heads.system import random_system
    from rsneo.io.cog import ClassLegend, gdal_env
    from rsneo.io.windows import RasterWindows
    from rsneo.predict.maps.segmentation import SegmentationPredictor
    from rsneo.predict.sliding_window import MapSpec, WindowPlan, predict_raster

    raster = folder / f"s2_{size}.tif"
    names = ["water", "forest", "built-up"]
    if threads:
        torch.set_num_threads(threads)
    load = os.getloadavg()[0]
    if predictor == "model":
        system = random_system()
        system.model.to(device)
        system.segmentation.to(device)
        predict_fn = SegmentationPredictor(system, band_layout(raster), names)
    else:
        predict_fn = brightness
    legend = ClassLegend.from_names([*names, NONE_OF_THESE])
    out = folder / f"classes_{size}.tif"
    start, start_cpu = time.perf_counter(), time.process_time()
    with gdal_env(), rasterio.open(raster) as src:
        predict_raster(
            RasterWindows([src]), MapSpec(predict_fn, legend), out, crs=src.crs, transform=src.transform,
            plan=WindowPlan(window, 32, batch), signature=f"bench{size}",
        )  # fmt: skip
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0
    return {
        "size": size,
        "megapixels": size * size / 1e6,
        "seconds": round(seconds, 2),
        "cpu_s": round(cpu, 2),
        "threads": torch.get_num_threads(),
        "load": round(load, 2),
        "mp_per_s": round(size * size / 1e6 / seconds, 3),
        "peak_rss_mb": round(peak_mb, 1),
        "peak_gpu_mb": round(gpu_mb, 1),
    }


def engine_main(args: argparse.Namespace) -> None:
    folder = args.keep or Path(tempfile.mkdtemp(prefix="rsneo_inference_"))
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes:
        raster = folder / f"s2_{size}.tif"
        if not raster.exists():
            make_raster(raster, size)
        cmd = [sys.executable, __file__, "--mode", "engine", "--one", str(size), "--keep", str(folder)]
        cmd += ["--device", args.device, "--window", str(args.window), "--batch", str(args.batch)]
        cmd += ["--predictor", args.predictor, "--threads", str(args.threads)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT")), None)
        if line is None:
            print(done.stdout + done.stderr, file=sys.stderr)
            raise SystemExit(f"size {size} failed")
        result = json.loads(line[len("RESULT") :])
        results.append(result)
        print(
            f"{size:>6} px  {result['megapixels']:8.1f} MP  {result['seconds']:8.1f} s  "
            f"{result['cpu_s']:8.1f} CPU s  {result['mp_per_s']:7.3f} MP/s  peak RSS "
            f"{result['peak_rss_mb']:7.1f} MB  {result['threads']} thread(s)  load {result['load']:.1f}"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["segment", "engine"], default="segment")
    parser.add_argument("--size", type=int, default=4096, help="segment mode: raster side in pixels")
    parser.add_argument("--cprofile", type=int, default=0, help="segment mode: also list the top N functions")
    parser.add_argument(
        "--stand-in", action="store_true", help="segment mode: a per-pixel rule instead of the model"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--predictor", choices=["model", "pointwise"], default="model")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (0: rsneo's policy)")
    parser.add_argument("--keep", type=Path, default=None, help="Keep files here (default: temp)")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # engine worker mode
    args = parser.parse_args()
    if args.one is not None:
        result = run_engine(
            args.one, args.keep, args.device, args.window, args.batch, args.predictor, args.threads
        )
        print("RESULT" + json.dumps(result), flush=True)
    elif args.mode == "engine":
        engine_main(args)
    else:
        segment_main(args)


if __name__ == "__main__":
    main()
