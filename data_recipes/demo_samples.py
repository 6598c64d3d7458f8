"""Copy the redistributable demo samples from ../shared/data into rsneo/assets/samples/.

Only data whose licence allows redistribution is copied (Sen1Floods11 CC-BY-4.0, BigEarthNet CDLA-
Permissive-1.0 via the Apache-2.0 bigearthnet-common examples, the Taizhou Landsat pair MIT, the Pucallpa
Landsat series MIT with public-domain imagery). LEVIR-CD, LEVIR-CC and RSICD images are academic-only and
are never copied.

Files are copied byte for byte, except the Pucallpa series, which is cut to a 256 x 256 window (same CRS and
pixel size; the window's own transform) to keep the package small.

The licence texts that ship with the shared data are copied into licenses/; the three that do not
(Sen1Floods11 CC-BY-4.0 notice, BigEarthNet CDLA notice, ChangeDetectionRepository MIT licence) are kept
in the repository by hand and left alone here.

Usage: python data_recipes/demo_samples.py [--shared ../shared/data] [--out rsneo/assets/samples]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import rasterio
from rasterio.enums import ColorInterp
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]

SEN1FLOODS11 = [
    "S2/Spain_7370579_S2Hand.tif",
    "S1/Spain_7370579_S1Hand.tif",
    "Labels/Spain_7370579_LabelHand.tif",
]
BIGEARTHNET_S2 = "BigEarthNet-S2-Example/S2B_MSIL2A_20170924T93020_69_24"
BIGEARTHNET_S1 = "BigEarthNet-S1-Example/S1A_IW_GRDH_1SDV_20170925T043256_35VPK_69_24"
TAIZHOU = ["2000TM", "2000TM.HDR", "2003TM", "2003TM.HDR", "change.bmp", "unchanged.bmp"]
PUCALLPA_YEARS = [1985, 2000, 2010, 2020]
PUCALLPA_WINDOW = Window(col_off=220, row_off=60, width=256, height=256)
PUCALLPA_BANDS = ("SWIR1", "NIR", "Red", "Green")  # per the source's README; the files carry no names


def copy_files(src: Path, dst: Path, names: list[str]) -> None:
    for name in names:
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / name, dst / name)


def crop_geotiff(src: Path, dst: Path, window: Window, band_names: tuple[str, ...]) -> None:
    """Write `window` of `src` as a deflate GeoTIFF with the window's georeference and named bands."""
    with rasterio.open(src) as ds:
        data = ds.read(window=window)  # (bands, 256, 256)
        profile = ds.profile | {
            "driver": "GTiff",
            "width": window.width,
            "height": window.height,
            "transform": ds.window_transform(window),
            "compress": "deflate",
            "tiled": False,
            "photometric": "MINISBLACK",  # 4 bands are not RGBA: band 4 is green, not an alpha mask
        }
    dst.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
        for i, name in enumerate(band_names, start=1):
            out.set_band_description(i, name)
        out.colorinterp = [ColorInterp.gray] + [ColorInterp.undefined] * (len(band_names) - 1)


def build(shared: Path, out: Path) -> None:
    copy_files(shared / "sen1floods11", out / "sen1floods11", SEN1FLOODS11)
    for folder in (BIGEARTHNET_S2, BIGEARTHNET_S1):
        names = sorted(p.name for p in (shared / "bigearthnet" / folder).iterdir())
        copy_files(shared / "bigearthnet" / folder, out / "bigearthnet" / Path(folder).name, names)
    copy_files(shared / "landsat_change_taizhou", out / "landsat_change_taizhou", TAIZHOU)
    for year in PUCALLPA_YEARS:
        src = shared / "timeseries" / "landsat_pucallpa" / f"{year}.tif"
        crop_geotiff(src, out / "landsat_pucallpa" / f"{year}.tif", PUCALLPA_WINDOW, PUCALLPA_BANDS)
    licences = out / "licenses"
    licences.mkdir(exist_ok=True)
    shutil.copyfile(shared / "bigearthnet" / "LICENSE", licences / "bigearthnet-common-Apache-2.0.txt")
    shutil.copyfile(shared / "timeseries" / "LICENSE", licences / "opengeos-data-MIT.txt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "rsneo" / "assets" / "samples")
    args = parser.parse_args()
    build(args.shared, args.out)
    print(f"samples written to {args.out}")


if __name__ == "__main__":
    main()
