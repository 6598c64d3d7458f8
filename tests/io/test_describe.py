"""`rsneo info`: what a raster holds, as text and JSON."""

from __future__ import annotations

import json

import numpy as np
import rasterio

from rsneo.cli import run_app


def test_info_json_reports_sensor_grid_nodata_and_band_statistics(shared_data, capsys):
    path = shared_data / "rasters/RGB.byte.tif"
    assert run_app(["info", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    [report] = json.loads(out)["rasters"]
    with rasterio.open(path) as src:
        data = src.read()
        assert report["crs"] == "EPSG:32618" and (report["width"], report["height"]) == (
            src.width,
            src.height,
        )
    assert report["sensor"] == "rgb" and [b["name"] for b in report["bands"]] == ["red", "green", "blue"]
    assert abs(report["nodata_fraction"] - (data == 0).mean()) < 1e-9
    valid = data[0][data[0] != 0].astype(np.float64)
    assert abs(report["bands"][0]["mean"] - valid.mean()) < 1e-6
    assert report["bands"][0]["wavelength_um"] == 0.665


def test_info_text_for_a_series_and_a_sensor_given_on_the_command_line(shared_data, capsys):
    files = sorted((shared_data / "timeseries/landsat_pucallpa").glob("*.tif"))[:2]
    argv = ["info", *map(str, files), "--sensor", "landsat5_tm", "--bands", "B5,B4,B3,B2"]
    assert run_app(argv) == 0
    out = capsys.readouterr().out
    assert "landsat5_tm" in out and "1990-01-01" in out and "swir16" in out
