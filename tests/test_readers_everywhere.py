"""Every reader in every command: a band folder, a local STAC item and a PNG work in info, segment, change
and ask alike, with the same warnings (one opener, `open_source`; stacked as a VRT for windowed reads)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pystac
import pytest

from rsneo.cli import run_app
from rsneo.io.read import open_input, open_source, read_source

BEN = "bigearthnet/BigEarthNet-S2-Example/S2A_MSIL2A_20170613T101031_87_48"
PNG = "levir_cd/A/test_2_0000_0000.png"
PIXEL_UNITS = "has no georeference: using pixel units"


def stac_item(shared_data: Path, folder: Path) -> Path:
    item = pystac.Item(
        id="S2A_MSIL2A_20170613_87_48", geometry=None, bbox=None,
        datetime=dt.datetime(2017, 6, 13, 10, 10, 31), properties={"platform": "sentinel-2a"},
    )  # fmt: skip
    for tif in sorted((shared_data / BEN).glob("*.tif")):
        item.add_asset(tif.stem.rsplit("_", 1)[-1], pystac.Asset(str(tif), roles=["data"]))
    path = folder / "item.json"
    item.save_object(dest_href=str(path), include_self_link=False)
    return path


def test_band_folder_opens_as_one_stacked_raster(shared_data):
    import rasterio

    source = open_source(shared_data / BEN)
    want = read_source(source)  # (bands, h, w) on the finest (10 m) grid
    with open_input(shared_data / BEN) as src:
        got = src.read().astype(np.float32)
        assert list(src.descriptions) == [b.name for b in source.bands]
    for i, band in enumerate(source.bands):
        with rasterio.open(source.files[i].path) as one:
            native = one.res == source.grid.res
        if native:  # 10 m bands: the same pixels
            np.testing.assert_array_equal(got[i], want[i], err_msg=band.name)
        else:  # 20/60 m bands: the same bilinear resampling, rounded to the stored integer type (uint16)
            np.testing.assert_allclose(got[i], want[i], rtol=0, atol=0.5, err_msg=band.name)


def _input(kind: str, shared_data: Path, folder: Path) -> Path:
    return {
        "band folder": shared_data / BEN,
        "STAC item": stac_item(shared_data, folder) if kind == "STAC item" else None,
        "PNG": shared_data / PNG,
    }[kind]


@pytest.mark.parametrize("kind", ["band folder", "STAC item", "PNG"])
@pytest.mark.parametrize("command", ["info", "segment", "change", "ask"])
def test_every_reader_in_every_command(command, kind, shared_data, tiny_model_dir, tmp_path, capsys):
    raster = str(_input(kind, shared_data, tmp_path))
    model = ["--model", str(tiny_model_dir)]
    small = ["--window", "64", "--overlap", "0"]
    out = str(tmp_path / "out")
    argv = {
        "info": ["info", raster],
        "segment": ["segment", raster, "--classes", "water,land", "--out", out, *model, *small],
        "change": ["change", raster, raster, "--out", out, *model, *small],
        "ask": ["ask", raster, "What is there?", "--max-side", "64", *model],
    }[command]
    assert run_app(argv) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "error" not in err
    assert (PIXEL_UNITS in err) == (kind == "PNG"), err  # the same warning in every command, only for the PNG
