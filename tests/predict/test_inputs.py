"""A request's rasters opened as the engine reads them (`rsneo.predict.inputs`)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from rsneo.data.frames import band_layout
from rsneo.predict.inputs import layouts_of, open_dates, open_raster_input, reduced

NAIP = "timeseries/naip_m4709963/m_4709963_se_14_1_{}.tif"


def test_dates_on_another_grid_are_read_on_the_first_ones(shared_data, tmp_path):
    """A later date that covers more ground is warped onto the first date's grid: windows of both dates are
    of the same place, and one date alone keeps that grid."""
    full = shared_data / NAIP.format("20100629")
    crop = tmp_path / NAIP.format("20090818").split("/")[-1]  # the first date: a 96-pixel corner, NAIP named
    with rasterio.open(full) as src:
        window = rasterio.windows.Window(64, 64, 96, 96)
        profile = src.profile | {"width": 96, "height": 96, "transform": src.window_transform(window)}
        with rasterio.open(crop, "w", **profile) as dst:
            dst.write(src.read(window=window))
        corner = src.read(window=window).astype(np.float32)
    rasters = [crop, full]
    with open_dates(rasters, layouts_of(rasters, None, None, "sensor")) as inputs:
        assert (inputs.crs, inputs.pixel_units) == (rasterio.open(crop).crs, False)
        pixels, valid = inputs.windows().read(0, 0, 96)  # (dates, bands, 96, 96)
        last = inputs.date(-1)
        assert last.rasters == [full] and last.transform == inputs.transform
        alone, _ = last.windows().read(0, 0, 96)
    assert pixels.shape == (2, 4, 96, 96) and valid.all()
    np.testing.assert_array_equal(pixels[0], corner)
    np.testing.assert_allclose(pixels[1], corner, atol=1.0)  # the same pixels, through a bilinear warp
    np.testing.assert_array_equal(alone, pixels[1])


def test_an_overview_has_whole_tokens_and_the_same_ground(shared_data):
    path = shared_data / NAIP.format("20100629")
    layout = band_layout(path)
    with open_raster_input(path, layout) as full, reduced(full, 128, 32) as small:
        assert small.datasets[0].width <= 128 and small.datasets[0].width % 32 == 0
        assert small.datasets[0].bounds == pytest.approx(full.datasets[0].bounds)
        assert small.crs == full.crs and small.layouts == full.layouts
    with open_raster_input(path, layout) as full, reduced(full, 10_000, 32) as same:
        assert same is full  # small enough: read as it is


def test_a_raster_without_georeference_is_in_pixel_units(shared_data):
    photo = shared_data / "levir_cd" / "A" / "test_7_0256_0512.png"
    (layout,) = layouts_of([photo], None, None, "sensor")
    with open_raster_input(photo, layout) as inputs:  # the products say so, where areas are reported
        assert inputs.pixel_units and inputs.crs is None
