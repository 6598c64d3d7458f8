"""Scenes: series stacked on the first date's grid, coordinates and attributes, masks."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject

from rsneo.io.scene import bands_of, grid_of, read_mask, read_scene, valid_mask

NAIP = "timeseries/naip_m4709963"


def test_naip_series_is_reprojected_onto_the_first_dates_grid(shared_data):
    files = sorted((shared_data / NAIP).glob("*.tif"))[:2]  # grids differ: 724 vs 723 rows, 2 m shift
    scene = read_scene(files[::-1], window=(300, 200, 64, 48))  # given out of order: sorted by date
    assert scene.dims == ("time", "band", "y", "x") and scene.shape == (2, 4, 48, 64)
    assert list(scene["time"].values.astype("datetime64[D]").astype(str)) == ["2009-08-18", "2010-06-29"]
    grid = grid_of(scene)
    with rasterio.open(files[0]) as src:
        np.testing.assert_array_equal(
            scene.values[0], src.read(window=((200, 248), (300, 364))).astype(np.float32)
        )
    with rasterio.open(files[1]) as src:
        want = np.zeros((4, 48, 64), np.float32)
        reproject(
            src.read().astype(np.float32), want, src_transform=src.transform, src_crs=src.crs,
            dst_transform=grid.transform, dst_crs=grid.crs, resampling=Resampling.bilinear,
        )  # fmt: skip
    np.testing.assert_allclose(scene.values[1], want, atol=0.51)


def test_scene_carries_band_names_wavelengths_sensor_crs_and_transform(shared_data):
    scene = read_scene(
        shared_data / "sen1floods11/S2/Spain_7370579_S2Hand.tif",
        subset=["B4", "B3", "B2", "B8"],
        window=(0, 0, 64, 64),
    )
    assert list(scene["band"].values) == ["B04", "B03", "B02", "B08"]
    np.testing.assert_allclose(scene["wavelength"].values, [0.665, 0.56, 0.49, 0.842])
    assert list(scene["common_name"].values) == ["red", "green", "blue", "nir"]
    assert scene.attrs["sensor"] == "sentinel2_l1c" and "4326" in scene.attrs["crs"]
    assert np.isnat(scene["time"].values[0])
    with rasterio.open(shared_data / "sen1floods11/S2/Spain_7370579_S2Hand.tif") as src:
        assert grid_of(scene).transform == src.transform
        assert scene["x"].values[0] == src.xy(0, 0)[0]
    assert [b.name for b in bands_of(scene)] == ["B04", "B03", "B02", "B08"]


def test_valid_mask_follows_nodata(shared_data):
    scene = read_scene(shared_data / "rasters/RGB.byte.tif")
    with rasterio.open(shared_data / "rasters/RGB.byte.tif") as src:
        np.testing.assert_array_equal(valid_mask(scene)[0], src.read() != 0)


def test_labels_resample_nearest_so_classes_never_blend(shared_data):
    scene = read_scene(shared_data / "sen1floods11/S1/Spain_7370579_S1Hand.tif", resolution=0.0002)
    label = read_mask(shared_data / "sen1floods11/Labels/Spain_7370579_LabelHand.tif", grid_of(scene))
    assert label.shape == scene.shape[-2:]
    assert set(np.unique(label[~np.isnan(label)])) <= {-1.0, 0.0, 1.0}
    assert (label == 1).any() and (label == 0).any()


def test_change_pair_of_pngs_stacks_in_pixel_units(shared_data):
    from rsneo.io.read import PixelUnitsWarning

    with pytest.warns(PixelUnitsWarning, match="no georeference: using pixel units"):
        scene = read_scene(
            [shared_data / "levir_cd/A/test_2_0000_0000.png", shared_data / "levir_cd/B/test_2_0000_0000.png"]
        )
    assert scene.shape == (2, 3, 256, 256) and scene.attrs["crs"] == ""


def test_a_date_in_another_crs_is_reprojected_onto_the_first_grid(shared_data, tmp_path):
    from rasterio.warp import calculate_default_transform

    first = sorted((shared_data / NAIP).glob("*.tif"))[0]
    other = tmp_path / "m_4709963_se_14_1_20210101.tif"
    with rasterio.open(first) as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:4326", src.width, src.height, *src.bounds
        )
        profile = src.profile | {"crs": "EPSG:4326", "transform": transform, "width": width, "height": height}
        profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
        with rasterio.open(other, "w", **profile) as dst:
            for band in range(1, 5):
                reproject(rasterio.band(src, band), rasterio.band(dst, band), resampling=Resampling.bilinear)
    scene = read_scene([first, other], window=(300, 300, 64, 64))
    assert scene.attrs["crs"] and "26914" in scene.attrs["crs"]
    a, b = scene.values[0], scene.values[1]
    both = ~np.isnan(a) & ~np.isnan(b)
    assert both.mean() > 0.99
    assert np.corrcoef(a[both], b[both])[0, 1] > 0.9  # the same ground, twice resampled
    assert np.abs(a - b)[both].mean() < 10
