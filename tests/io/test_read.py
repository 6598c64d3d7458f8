"""Opening rasters as sources and reading windows: numbers against plain rasterio and GDAL's own warp."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.windows import Window

from rsneo.io.grid import Grid
from rsneo.io.read import PixelUnitsWarning, open_source, read_source, select_bands

BEN = "bigearthnet/BigEarthNet-S2-Example/S2A_MSIL2A_20170613T101031_87_48"


def test_sen1floods11_s2_is_sentinel2_l1c_from_band_descriptions(shared_data):
    source = open_source(shared_data / "sen1floods11/S2/Spain_7370579_S2Hand.tif")
    assert source.sensor.name == "sentinel2_l1c"
    assert [b.name for b in source.bands][8:11] == ["B8A", "B09", "B10"]
    assert source.grid.crs.to_epsg() == 4326 and (source.grid.width, source.grid.height) == (512, 512)


def test_window_read_equals_the_same_slice_of_a_plain_rasterio_read(shared_data):
    path = shared_data / "sen1floods11/S2/Spain_7370579_S2Hand.tif"
    source = open_source(path)
    window = Window(100, 200, 64, 32)
    got = read_source(source, source.grid.window(window))  # (13, 32, 64)
    with rasterio.open(path) as src:
        want = src.read(window=window).astype(np.float32)
    want[want == 0] = np.nan  # nodata 0
    np.testing.assert_array_equal(got, want)


def test_band_folder_resamples_20m_bands_bilinear_onto_the_10m_grid(shared_data):
    folder = shared_data / BEN
    source = open_source(folder)
    assert source.sensor.name == "sentinel2_l2a" and source.date == np.datetime64("2017-06-13")
    assert [b.name for b in source.bands] == source.sensor.band_names  # sensor order, B8A after B08
    assert source.grid.res == (10.0, 10.0) and source.grid.width == 120
    data = read_source(source)  # (12, 120, 120)
    with rasterio.open(next(folder.glob("*_B02.tif"))) as src:
        np.testing.assert_array_equal(data[1], src.read(1).astype(np.float32))
    with rasterio.open(next(folder.glob("*_B05.tif"))) as src:
        want = np.full((120, 120), np.nan, np.float32)
        reproject(
            src.read(1).astype(np.float32), want, src_transform=src.transform, src_crs=src.crs,
            dst_transform=source.grid.transform, dst_crs=source.grid.crs, resampling=Resampling.bilinear,
            dst_nodata=np.nan,
        )  # fmt: skip
    both = ~np.isnan(want) & ~np.isnan(data[4])
    assert both.mean() > 0.95
    np.testing.assert_allclose(data[4][both], want[both], rtol=1e-4, atol=1e-2)


def test_envi_landsat_pair_bands_matched_by_header_wavelengths(shared_data):
    source = open_source(shared_data / "landsat_change_taizhou/2003TM")
    assert source.sensor.name == "landsat7_etm"
    assert [b.name for b in source.bands] == ["B1", "B2", "B3", "B4", "B5", "B7"]
    assert source.grid.crs.to_epsg() == 32651 and source.grid.res == (30.0, 30.0)
    assert source.date == np.datetime64("2003-02-06")  # from the Landsat scene id in the ENVI band names


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # the plain reference read
def test_png_without_georeference_warns_and_uses_pixel_units(shared_data):
    with pytest.warns(PixelUnitsWarning, match="no georeference: using pixel units"):
        source = open_source(shared_data / "levir_cd/A/test_2_0000_0000.png")
    assert source.sensor.name == "rgb" and source.grid.crs is None
    part = read_source(source, source.grid.window(Window(10, 20, 32, 16)))
    with rasterio.open(shared_data / "levir_cd/A/test_2_0000_0000.png") as src:
        np.testing.assert_array_equal(part, src.read()[:, 20:36, 10:42].astype(np.float32))


def test_nodata_becomes_nan_and_outside_the_file_too(shared_data):
    source = open_source(shared_data / "rasters/RGB.byte.tif")
    data = read_source(source)
    with rasterio.open(shared_data / "rasters/RGB.byte.tif") as src:
        np.testing.assert_array_equal(np.isnan(data), src.read() == 0)
    shifted = Grid(source.grid.crs, source.grid.transform, source.grid.width, source.grid.height).window(
        Window(-10, 0, 20, 20)
    )
    assert np.isnan(read_source(source, shifted)[:, :, :10]).all()


def test_given_sensor_and_bands_name_an_unlabelled_raster(shared_data):
    source = open_source(
        shared_data / "timeseries/landsat_pucallpa/1985.tif",
        sensor="landsat5_tm",
        bands=["B5", "B4", "B3", "B2"],
    )
    assert [b.common_name for b in source.bands] == ["swir16", "nir08", "red", "green"]
    assert source.date == np.datetime64("1985-01-01")


def _plain(path, window: Window, indexes: list[int] | None = None) -> np.ndarray:
    """The same window read with rasterio alone: float32, NaN where GDAL's mask says no data."""
    with rasterio.open(path) as src:
        return src.read(indexes, window=window, masked=True).astype(np.float32).filled(np.nan)


def test_one_read_of_all_bands_equals_plain_rasterio_for_naip_and_reordered_bands(shared_data):
    path = sorted((shared_data / "timeseries/naip_m4709963").glob("*.tif"))[0]
    source = open_source(path)
    window = Window(300, 200, 64, 48)
    got = read_source(source, source.grid.window(window))
    want = _plain(path, window)
    assert got.dtype == np.float32 and np.isfinite(want).any()
    np.testing.assert_array_equal(got, want)  # stored integers read as float32: exact
    s2 = shared_data / "sen1floods11/S2/Spain_7370579_S2Hand.tif"
    picked = select_bands(open_source(s2), ["B4", "B3", "B2"])  # file bands 4, 3, 2: one read, in this order
    np.testing.assert_array_equal(
        read_source(picked, picked.grid.window(window)), _plain(s2, window, [4, 3, 2])
    )


def test_wide_integers_and_internal_masks_read_as_rasterio_does(shared_data, tmp_path):
    """int32 beyond float32's exact range is read as stored then converted; an internal mask (not a nodata
    value) is honoured band by band."""
    s2 = shared_data / "sen1floods11/S2/Spain_7370579_S2Hand.tif"
    with rasterio.open(s2) as src:
        data, profile = src.read(), src.profile
    wide = tmp_path / "wide.tif"
    gaps = data[0] > 1500  # bright pixels of band 1 play no data (~ a third of the chip)
    stored = data.astype(np.int32) * 4099 + 16_777_217  # odd values above 2**24: float32 rounds them
    stored[:, gaps] = -1
    with rasterio.open(wide, "w", **{**profile, "dtype": "int32", "nodata": -1}) as dst:
        dst.write(stored)
    masked = tmp_path / "masked.tif"
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
        rasterio.open(masked, "w", **profile | {"nodata": None}) as dst,
    ):
        dst.write(data)
        dst.write_mask(np.where(gaps, 0, 255).astype(np.uint8))
    window = Window(40, 100, 96, 80)
    for path in (wide, masked):
        source = open_source(path, sensor="sentinel2_l1c")
        got, want = read_source(source, source.grid.window(window)), _plain(path, window)
        assert 0 < np.isnan(want).mean() < 1
        np.testing.assert_array_equal(got, want)
