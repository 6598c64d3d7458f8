"""`rsneo.io.windows`: windows read as the model reads them (valid pixels as GDAL says), reduced reads, and
the band list every reader shares (an alpha band that masks the others is not data; one that does not is)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from rsneo.io.dataset import data_bands, open_raster
from rsneo.io.read import PixelUnitsWarning, open_source
from rsneo.io.windows import RasterWindows, overview_size, raster_statistics

S2 = "sen1floods11/S2/Spain_7370579_S2Hand.tif"


@pytest.mark.parametrize(
    "name",
    [
        "rasters/RGB.byte.tif",  # uint8, nodata 0 on every band
        "rasters/shade.tif",  # one band, nodata 255
        "sen1floods11/S1/Spain_7370579_S1Hand.tif",  # float32 with NaN
        "sen1floods11/S2/Spain_7370579_S2Hand.tif",  # 13 int16 bands
        "levir_cd/A/test_2_0000_0000.png",  # no nodata at all
    ],
)
def test_window_validity_is_gdal_dataset_mask(shared_data, name):
    """Validity taken from the values already read equals `dataset_mask` (which re-reads every band)."""
    with open_raster(shared_data / name) as src:  # no NotGeoreferencedWarning for the PNG
        windows = RasterWindows([src])
        for row, col in [(0, 0), (src.height // 3, src.width // 2), (src.height - 40, src.width - 40)]:
            _, valid = windows.read(row, col, 64)
            h, w = min(64, src.height - row), min(64, src.width - col)
            expected = src.dataset_mask(window=rasterio.windows.Window(col, row, w, h)) > 0
            np.testing.assert_array_equal(valid[:h, :w], expected)
            assert not valid[h:, :].any() and not valid[:, w:].any()


def test_window_validity_of_a_reprojected_view_uses_its_alpha(shared_data):
    from rasterio.vrt import WarpedVRT

    with (
        rasterio.open(shared_data / "rasters" / "RGB.byte.tif") as src,
        WarpedVRT(src, crs="EPSG:4326", add_alpha=True) as vrt,
    ):
        windows = RasterWindows([vrt])
        assert windows.bands == [[1, 2, 3]]  # the alpha band is the mask, not data
        seen = []
        for row, col in [(0, 0), (vrt.height // 2, vrt.width // 2), (vrt.height // 4, 0)]:
            _, valid = windows.read(row, col, 64)
            expected = vrt.dataset_mask(window=rasterio.windows.Window(col, row, 64, 64)) > 0
            np.testing.assert_array_equal(valid, expected)
            seen.append(valid)
        assert np.concatenate(seen).any() and not np.concatenate(seen).all()  # both kinds of pixels occur


def test_raster_statistics_of_a_decimated_read_stay_close_to_the_full_ones(shared_data):
    mean, std = raster_statistics(shared_data / S2, sample=128)  # 512 pixels a side read 1 in 4
    with rasterio.open(shared_data / S2) as src:
        full = src.read().astype(np.float64).reshape(src.count, -1)
    # nearest-neighbour decimation of a 512-pixel scene: a few percent of a band's spread
    np.testing.assert_allclose(mean, full.mean(1), atol=0.05 * full.std(1).max())
    np.testing.assert_allclose(std, full.std(1), rtol=0.15, atol=1.0)


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [
        ((400, 400), 512, (384, 384)),  # never enlarged, rounded to multiples of 32
        ((2048, 1024), 512, (256, 512)),  # (height, width), aspect kept
        ((10000, 100), 512, (32, 512)),  # never below one token
    ],
)
def test_overview_size(size, max_side, expected):
    assert overview_size(*size, max_side, 32) == expected


def _naip_crop(shared_data, path, driver: str = "GTiff"):
    """A 64-pixel crop of a real NAIP date (R, G, B, NIR), written with its source's profile as GDAL would."""
    source = sorted((shared_data / "timeseries" / "naip_m4709963").glob("*.tif"))[0]
    with rasterio.open(source) as src:
        window = Window(200, 200, 64, 64)
        pixels = src.read(window=window)
        profile = src.profile | {"width": 64, "height": 64, "transform": src.window_transform(window)}
    if driver == "PNG":  # an RGBA picture: the 4th band is opacity, fully opaque here; no georeference
        profile = {"driver": "PNG", "width": 64, "height": 64, "count": 4, "dtype": "uint8"}
        pixels = np.concatenate([pixels[:3], np.full((1, 64, 64), 255, np.uint8)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the PNG has no georeference, on purpose
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(pixels)
    return pixels


def test_an_alpha_tag_gdal_does_not_mask_with_stays_a_data_band(shared_data, tmp_path):
    """GDAL tags the 4th band of a 4-band uint8 GeoTIFF written with NAIP's profile alpha; with a nodata
    value it masks nothing with it, so NAIP's near infrared band is data for every reader."""
    pixels = _naip_crop(shared_data, tmp_path / "naip.tif")
    with open_raster(tmp_path / "naip.tif") as src:
        assert src.colorinterp[3] == rasterio.enums.ColorInterp.alpha  # the tag this test is about
        assert data_bands(src) == [1, 2, 3, 4]
        window, _ = RasterWindows([src]).read(0, 0, 64)
    np.testing.assert_array_equal(window, pixels.astype(np.float32))
    source = open_source(tmp_path / "naip.tif", sensor="naip")
    assert [b.name for b in source.bands] == ["R", "G", "B", "NIR"] and [f.index for f in source.files] == [
        1,
        2,
        3,
        4,
    ]


def test_an_alpha_band_that_masks_the_others_is_not_data(shared_data, tmp_path):
    _naip_crop(shared_data, tmp_path / "rgba.png", driver="PNG")
    with open_raster(tmp_path / "rgba.png") as src:
        assert data_bands(src) == [1, 2, 3]
        window, valid = RasterWindows([src]).read(0, 0, 64)
    assert window.shape == (3, 64, 64) and valid.all()
    with pytest.warns(PixelUnitsWarning):  # a picture without georeference
        source = open_source(tmp_path / "rgba.png")  # read as RGB: the opacity band is its mask
    assert source.sensor.name == "rgb" and len(source.bands) == 3


def test_nan_and_inf_pixels_of_an_untagged_float_raster_are_invalid_and_read_as_zero(shared_data, tmp_path):
    """GDAL's mask calls every pixel of a float raster without a nodata tag valid; NaN and inf are no data all
    the same (a NaN in any band invalidates the pixel: the model must not read half a spectrum)."""
    with rasterio.open(shared_data / S2) as src:
        profile = src.profile | {"dtype": "float32", "nodata": None}
        data = src.read(window=Window(0, 0, 64, 64)).astype(np.float32)
    profile |= {"width": 64, "height": 64}
    data[:, :10] = np.nan
    data[3, 20, 30] = np.inf
    data[5, 40, 41] = -np.inf
    path = tmp_path / "holes.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    with open_raster(path) as src:
        assert (src.dataset_mask() > 0).all()  # what GDAL alone says
        pixels, valid = RasterWindows([src]).read(0, 0, 64)
    expected = np.isfinite(data).all(0)
    np.testing.assert_array_equal(valid, expected)
    assert valid.sum() == 64 * 54 - 2
    assert np.isfinite(pixels).all() and (pixels[:, ~expected] == 0).all()
