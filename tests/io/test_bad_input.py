"""Bad input: each case one specific message (file, expected, found), exit status 2 from the CLI."""

from __future__ import annotations

import shutil
import warnings

import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from rsneo.cli import run_app
from rsneo.errors import InputError
from rsneo.io.read import open_source, read_source
from rsneo.io.scene import read_scene

S2HAND = "sen1floods11/S2/Spain_7370579_S2Hand.tif"


def test_truncated_file_names_the_file_and_exits_2(shared_data, tmp_path, capsys):
    broken = tmp_path / "truncated.tif"
    broken.write_bytes((shared_data / S2HAND).read_bytes()[:40_000])
    with pytest.raises(
        InputError, match=r"truncated.tif: cannot (open|read) it as a raster; .*truncated or corrupt"
    ):
        read_source(open_source(broken))
    assert run_app(["info", str(broken)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_band_count_that_does_not_match_the_sensor(shared_data):
    with pytest.raises(
        InputError, match=r"S2Hand.tif: has 13 bands but sensor sentinel2_l2a has 12 .*pass --bands"
    ):
        open_source(shared_data / S2HAND, sensor="sentinel2_l2a")


# The PNG written here has no georeference on purpose: GDAL says so, and rsneo warns about pixel units first.
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.filterwarnings("ignore::rsneo.io.read.PixelUnitsWarning")
def test_missing_crs_where_one_is_needed(shared_data, tmp_path):
    # a later date that lost its georeference: NAIP's 4 bands in a GeoTIFF without CRS or transform (a PNG
    # would not do: its 4th band is opacity)
    png = tmp_path / "m_4709963_se_14_1_20220101.tif"
    with rasterio.open(shared_data / "timeseries/naip_m4709963/m_4709963_se_14_1_20090818.tif") as src:
        profile = {
            "driver": "GTiff",
            "width": 64,
            "height": 64,
            "count": 4,
            "dtype": "uint8",
            "photometric": "minisblack",
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(png, "w", **profile) as dst:
                dst.write(src.read(window=((0, 64), (0, 64))))
    first = shared_data / "timeseries/naip_m4709963/m_4709963_se_14_1_20090818.tif"
    with pytest.raises(InputError, match=r"20220101.tif: has no CRS; expected one to reproject the dates"):
        read_scene([first, png])


def test_pair_that_does_not_overlap(shared_data, tmp_path):
    first = shared_data / "timeseries/naip_m4709963/m_4709963_se_14_1_20090818.tif"
    far = tmp_path / "m_4709963_se_14_1_20210101.tif"
    with rasterio.open(first) as src:
        profile = src.profile | {"transform": src.transform @ src.transform.translation(20_000, 0)}
        with rasterio.open(far, "w", **profile) as dst:
            dst.write(src.read())
    with pytest.raises(
        InputError, match=r"20210101.tif does not overlap .*20090818.tif: expected intersecting"
    ):
        read_scene([first, far])


def test_all_nodata_window(shared_data):
    with pytest.raises(InputError, match=r"RGB.byte.tif: the requested window holds no valid pixels"):
        read_scene(shared_data / "rasters/RGB.byte.tif", window=(0, 0, 64, 64))


def test_unknown_band_name(shared_data, capsys):
    with pytest.raises(
        InputError, match=r"unknown band name 'B13' for sensor sentinel2_l1c: expected one of"
    ):
        read_scene(shared_data / S2HAND, subset=["B04", "B13"])
    assert run_app(["info", str(shared_data / "timeseries/landsat_pucallpa/1985.tif"), "--sensor", "naip",
                    "--bands", "R,G,B,X"]) == 2  # fmt: skip
    assert "unknown band name 'X'" in capsys.readouterr().err


def test_ambiguous_raster_says_what_to_pass(shared_data):
    with pytest.raises(InputError, match=r"1985.tif: cannot tell which sensor .*pass --sensor NAME .*naip"):
        open_source(shared_data / "timeseries/landsat_pucallpa/1985.tif")


def test_file_not_found(tmp_path):
    with pytest.raises(InputError, match=r"nothing.tif: file not found"):
        open_source(tmp_path / "nothing.tif")
    shutil.rmtree(tmp_path)


# The PNG written here has no georeference on purpose: GDAL says so, and rsneo warns about pixel units first.
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.filterwarnings("ignore::rsneo.io.read.PixelUnitsWarning")
def test_pixel_unit_images_of_different_sizes_do_not_stack(shared_data, tmp_path):
    small = tmp_path / "small.png"
    with rasterio.open(shared_data / "levir_cd/B/test_2_0000_0000.png") as src:
        profile = {"driver": "PNG", "width": 128, "height": 128, "count": 3, "dtype": "uint8"}
        with rasterio.open(small, "w", **profile) as dst:
            dst.write(src.read(window=((0, 128), (0, 128))))
    with pytest.raises(InputError, match=r"small.png: has no georeference and is 128x128 pixels; expected"):
        read_scene([shared_data / "levir_cd/A/test_2_0000_0000.png", small], window=(0, 0, 64, 64))
