"""Polygons a GIS user can keep: how many polygons (and single pixels) a class map gives before and after the
minimum mapping unit (`--min-area`), and what `--simplify` does to their vertices, on shared scenes.

For each scene the bundled model's class map is made once without a sieve (`rsneo segment --min-area 0`);
each minimum mapping unit is then applied to a copy of that map by the same sieve the engine runs before a
map becomes a COG (`rsneo.io.sieve.sieve_class_map`) and traced (`rsneo.io.vector.write_class_polygons`). One
real `segment_raster` run with the default (2 px) checks that the engine gives the same polygons. Printed:
polygons, single-pixel polygons, hectares per class (after the sieve), vertices, CPU seconds of the sieve
and of the tracing with its GeoPackage write (process time, with the load average before and after and the
intra-op thread count, `--threads`, default 1: the machine is shared).

Usage: python benchmarks/polygons.py [--scenes rgb,naip] [--model rsneo/assets/model] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

DATA = Path(os.environ.get("RSNEO_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data"
SCENES = {
    # the rasterio sample: Landsat-7 RGB, 791 x 718, UTM; the four classes
    "rgb": (DATA / "rasters" / "RGB.byte.tif", ["water", "vegetation", "built-up", "cropland"]),
    # NAIP 2015, 934 x 723 at 5 m: ponds and fields
    "naip": (DATA / "timeseries" / "naip_m4709963" / "m_4709963_se_14_1_20150926.tif", ["water", "land"]),
}
UNITS = ("0", "2px", "4px", "9px")


def plain_copy(cog: Path, out: Path) -> Path:
    """The class map as the engine's partial file is (tiled GeoTIFF), for the sieve to rewrite."""
    import rasterio

    with rasterio.open(cog) as src:
        profile = src.profile | {"driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256}
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(src.read())
            dst.update_tags(**src.tags())
            dst.update_tags(1, **src.tags(1))
            dst.write_colormap(1, src.colormap(1))
    return out


def polygons_of(path: Path, legend, simplify=None) -> tuple[int, int, int, dict, float]:
    """(polygons, single-pixel polygons, vertices, hectares per class, CPU seconds of the tracing)."""
    import geopandas as gpd
    import shapely

    from rsneo.io.vector import write_class_polygons

    start = time.process_time()
    gpkg = path.with_suffix(f".{simplify or 'traced'}.gpkg")
    totals = write_class_polygons(path, gpkg, legend, simplify=simplify)
    seconds = time.process_time() - start
    frame = gpd.read_file(gpkg, layer="classes")
    vertices = int(shapely.get_num_coordinates(frame.geometry.values).sum())
    return len(frame), int((frame.pixels == 1).sum()), vertices, totals, seconds


def main() -> None:
    from rsneo.heads.system import BUNDLED_MODEL, load_system
    from rsneo.io.cog import read_legend
    from rsneo.io.sieve import parse_min_area, sieve_class_map
    from rsneo.model.threads import use_threads
    from rsneo.predict.requests import SegmentRequest
    from rsneo.predict.segment import segment_raster

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", default="rgb,naip")
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of the model")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    system = load_system(args.model)
    print(f"load average: {os.getloadavg()[0]:.1f}; {use_threads(args.threads)} thread(s)")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for key in args.scenes.split(","):
            raster, classes = SCENES[key]
            start = time.process_time()
            raw = segment_raster(system, SegmentRequest(raster=raster, classes=classes, out=tmp / key / "raw",
                                                        min_area=0, confidence=False))  # fmt: skip
            seconds = time.process_time() - start
            legend = read_legend(raw.cog)
            print(f"\n{key}: {raster.name}, classes {', '.join(classes)}; map {seconds:.1f} s CPU")
            print(f"{'min area':>9} | {'polygons':>8} | {'1-pixel':>7} | {'vertices':>8} | {'sieve s':>7} | "
                  f"{'trace s':>7} | hectares per class")  # fmt: skip
            for unit in UNITS:
                path = plain_copy(raw.cog, tmp / key / f"map_{unit}.tif")
                start = time.process_time()
                if parse_min_area(unit).active:
                    sieve_class_map(path, parse_min_area(unit))
                sieved = time.process_time() - start
                count, singles, vertices, totals, traced = polygons_of(path, legend)
                areas = ", ".join(f"{n} {a:,.0f}" for n, a in totals.items())
                print(f"{unit:>9} | {count:>8,} | {singles:>7,} | {vertices:>8,} | {sieved:>7.2f} | "
                      f"{traced:>7.2f} | {areas}")  # fmt: skip
                if unit == "2px":
                    for tolerance in ("1px", "2px"):
                        count, singles, vertices, totals2, traced = polygons_of(path, legend, tolerance)
                        same = all(abs(totals2[n] - totals[n]) < 1e-9 for n in totals)
                        print(f"{'  + --simplify ' + tolerance:>9} | {count:>8,} | {singles:>7,} | "
                              f"{vertices:>8,} | {'':>7} | {traced:>7.2f} | "
                              f"hectares unchanged: {same}")  # fmt: skip
            request = SegmentRequest(raster=raster, classes=classes, out=tmp / key / "2px", confidence=False)
            default = segment_raster(system, request)
            engine = polygons_of(default.cog, legend)
            print(f"engine run with the default (2 px): {engine[0]:,} polygons, {engine[1]:,} single pixels; "
                  f"{default.sieve}")  # fmt: skip
            shutil.rmtree(tmp / key)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
