"""A raster without a CRS is segmented in pixel units: integer pixel counts (never the transform's units), a
warning naming the file, and outputs marked as pixel units."""

from __future__ import annotations

import re
import warnings
import zipfile

import geopandas as gpd
import numpy as np
import rasterio

from rsneo.cli import run_app


def test_segment_without_crs_counts_pixels_and_says_so(tiny_model_dir, shared_data, tmp_path, capsys):
    raster = tmp_path / "nocrs.tif"  # 160 x 128 pixels of the RGB scene, its 300 m transform kept, no CRS
    with rasterio.open(shared_data / "rasters" / "RGB.byte.tif") as src:
        window = rasterio.windows.Window(300, 300, 160, 128)
        profile = {**src.profile, "width": 160, "height": 128, "transform": src.window_transform(window)}
        profile["crs"] = None
        pixels = src.read(window=window)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(raster, "w", **profile) as dst:
                dst.write(pixels)
    valid = (pixels != 0).any(0).sum()
    out = tmp_path / "out"
    argv = ["segment", str(raster), "--classes", "water,land", "--out", str(out)]
    assert run_app([*argv, "--model", str(tiny_model_dir), "--window", "64", "--overlap", "16"]) == 0
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert f"{raster} has no georeference" in err and "areas are pixel counts" in err
    assert err.count("has no georeference") == 1  # the input check and the run meet it; shown once
    printed = re.findall(r"^\s+.+: ([\d,]+) pixels$", captured.out, re.MULTILINE)
    assert printed and sum(int(p.replace(",", "")) for p in printed) == valid  # counts, not 90,000 m^2 "px"
    frame = gpd.read_file(out / "nocrs_classes.gpkg", layer="classes")
    assert "area_ha" not in frame.columns and frame.area_px.dtype.kind == "i"
    assert frame.area_px.sum() == valid
    with zipfile.ZipFile(out / "nocrs.qgz") as archive:
        project = archive.read("nocrs.qgs").decode()
    assert "(pixel units)" in project
    assert np.all(frame.area_px > 0)
