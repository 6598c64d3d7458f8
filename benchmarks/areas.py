"""Cost of true areas: class totals and polygons of a class map in several CRSs, seconds and Mpx/s.

A size x size class map is made from the Sen1Floods11 Sentinel-2 chip (water by NDWI > 0, land otherwise,
tiled with mirrored copies so regions cross strip seams), written as a COG in its UTM zone, EPSG:4326,
EPSG:3857 and EPSG:3035 (same pixel grid, only the CRS label and transform differ, so the work per pixel is
what is compared). For each: `class_areas` (per-pixel areas + bincount) and `write_class_polygons` (regions
merged across strips, exact areas from their outlines). Prints one line per CRS.

Usage: .venv/bin/python benchmarks/areas.py [--size 4096]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RSNEO_SHARED", REPO.parent / "shared")) / "data"
SCENE = SHARED / "sen1floods11" / "S2" / "Spain_7370579_S2Hand.tif"
# (crs, top-left x, top-left y, pixel size) near the scene (Spain, ~40 N)
GRIDS = [
    ("EPSG:32630", 500_000.0, 4_430_000.0, 10.0),
    ("EPSG:4326", -3.0, 40.0, 9e-5),
    ("EPSG:3857", -333_958.0, 4_865_942.0, 13.0),
    ("EPSG:3035", 3_150_000.0, 1_950_000.0, 10.0),
]


def class_map(size: int) -> np.ndarray:
    with rasterio.open(SCENE) as src:
        green, nir = src.read(3).astype(np.float32), src.read(8).astype(np.float32)
    water = ((green - nir) / np.maximum(green + nir, 1) > 0).astype(np.uint8)
    tile = np.block([[water, water[:, ::-1]], [water[::-1], water[::-1, ::-1]]])
    reps = -(-size // tile.shape[0])
    return np.tile(tile, (reps, reps))[:size, :size]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args()
    from rsneo.io.cog import ClassLegend, CogBlockWriter
    from rsneo.io.vector import class_areas, write_class_polygons

    legend = ClassLegend.from_names(["land", "water"])
    classes = class_map(args.size)
    mpx = args.size * args.size / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        for crs, x, y, res in GRIDS:
            cog = Path(tmp) / f"{crs.replace(':', '_')}.tif"
            transform = rasterio.Affine(res, 0, x, 0, -res, y)
            writer = CogBlockWriter(
                cog, width=args.size, height=args.size, crs=crs, transform=transform, legend=legend
            )
            writer.write(Window(0, 0, args.size, args.size), classes)
            writer.finish()
            start = time.perf_counter()
            areas = class_areas(cog, legend)
            totals = time.perf_counter() - start
            start = time.perf_counter()
            write_class_polygons(cog, Path(tmp) / f"{cog.stem}.gpkg", legend)
            polygons = time.perf_counter() - start
            print(
                f"{crs:11s} {args.size}^2: class_areas {totals:6.2f} s ({mpx / totals:6.1f} Mpx/s), "
                f"polygons {polygons:6.2f} s ({mpx / polygons:5.1f} Mpx/s); water {areas['water']:,.1f} ha"
            )


if __name__ == "__main__":
    main()
