"""A local STAC item reads like the band folder it points at."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pystac
import pytest

from rsneo.errors import InputError
from rsneo.io.read import open_source, read_source
from rsneo.io.scene import read_scene

BEN = "bigearthnet/BigEarthNet-S2-Example/S2A_MSIL2A_20170613T101031_87_48"


def _item(shared_data, tmp_path, platform="sentinel-2a", href_prefix=""):
    item = pystac.Item(
        id="S2A_MSIL2A_20170613_87_48", geometry=None, bbox=None,
        datetime=dt.datetime(2017, 6, 13, 10, 10, 31), properties={"platform": platform},
    )  # fmt: skip
    for tif in sorted((shared_data / BEN).glob("*.tif")):
        band = tif.stem.rsplit("_", 1)[-1]
        item.add_asset(band, pystac.Asset(href_prefix + str(tif), roles=["data"]))
    item.add_asset("thumbnail", pystac.Asset(str(tmp_path / "thumb.png"), roles=["thumbnail"]))
    path = tmp_path / "item.json"
    item.save_object(dest_href=str(path), include_self_link=False)
    return path


def test_stac_item_reads_like_the_band_folder(shared_data, tmp_path):
    source = open_source(_item(shared_data, tmp_path))
    folder = open_source(shared_data / BEN)
    assert source.sensor.name == "sentinel2_l2a" and source.date == np.datetime64("2017-06-13")
    assert [b.name for b in source.bands] == [b.name for b in folder.bands]
    np.testing.assert_array_equal(read_source(source), read_source(folder))
    scene = read_scene(_item(shared_data, tmp_path), subset=["red", "B03", "B02"])
    assert list(scene["band"].values) == ["B04", "B03", "B02"]


def test_stac_item_with_remote_assets_is_refused(shared_data, tmp_path):
    with pytest.raises(InputError, match="asset B01 is remote .* expected local files"):
        open_source(_item(shared_data, tmp_path, href_prefix="https://example.com"))


def test_stac_item_of_unknown_platform_asks_for_the_sensor(shared_data, tmp_path):
    with pytest.raises(InputError, match="names no known platform .*pass --sensor NAME"):
        open_source(_item(shared_data, tmp_path, platform="worldview-3"))
    assert open_source(_item(shared_data, tmp_path, "worldview-3"), sensor="sentinel2_l2a").sensor.name == (
        "sentinel2_l2a"
    )
