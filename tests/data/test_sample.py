"""`rsneo.data.sample`: cutting a sample keeps its pixels, georeference, mask and partners in step, and the
tiles of a raster standardise with the whole raster's statistics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from affine import Affine

from rsneo.data.frames import band_statistics
from rsneo.data.sample import SCENE, Sample, centre_window, cut, cut_tiles, tiles, unlabelled_share
from rsneo.io.scene import read_scene


def test_tiles_are_row_major_and_drop_the_partial_edge():
    assert tiles(300, 520, 256) == [(slice(0, 256), slice(0, 256)), (slice(0, 256), slice(256, 512))]
    assert tiles(100, 80, 256) == [(slice(0, 100), slice(0, 80))]  # smaller than a tile: one window
    assert centre_window(120, 120, 96) == (slice(12, 108), slice(12, 108))
    assert centre_window(50, 200, 64) == (slice(0, 50), slice(68, 132))  # clipped where the raster is small


@pytest.fixture(scope="module")
def pucallpa(shared_data) -> Sample:
    folder = shared_data / "timeseries/landsat_pucallpa"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scene = read_scene(sorted(folder.glob("*.tif")), sensor="landsat5_tm", bands=["B5", "B4", "B3", "B2"])
    mask = np.where(np.arange(scene.sizes["x"])[None] % 2, 1, -1) * np.ones((scene.sizes["y"], 1), np.int64)
    partner = scene.isel(time=[0], x=slice(0, 300))  # narrower than the scene: left out of tiles past it
    return Sample("pucallpa", scene, mask.astype(np.int64), ("a", "b"), partners={"first": partner})


def test_a_cut_keeps_pixels_corner_mask_and_origin_in_step(pucallpa):
    part = cut(pucallpa, (slice(64, 128), slice(256, 320)))
    assert part.name == "pucallpa_r64_c256" and part.origin == (64, 256)
    np.testing.assert_array_equal(part.scene.values, pucallpa.scene.values[:, :, 64:128, 256:320])
    np.testing.assert_array_equal(part.mask, pucallpa.mask[64:128, 256:320])
    whole, corner = Affine(*pucallpa.scene.attrs["transform"]), Affine(*part.scene.attrs["transform"])
    assert corner * (0, 0) == pytest.approx(whole * (256, 64))  # the tile's own georeference
    assert part.partners == {}  # the partner stops at column 300
    inside = cut(pucallpa, (slice(0, 64), slice(0, 64)))
    np.testing.assert_array_equal(
        inside.partners["first"].values, pucallpa.partners["first"].values[..., :64, :64]
    )


def test_tiles_of_an_8_bit_stretch_carry_the_whole_series_statistics(pucallpa):
    parts = cut_tiles(pucallpa, 128)
    assert len(parts) == len(tiles(377, 697, 128))
    mean, std = band_statistics(pucallpa.scene)  # the whole series, every date
    for part in parts:
        np.testing.assert_allclose(part.statistics[SCENE][0], mean, rtol=1e-6)
        np.testing.assert_allclose(part.statistics[SCENE][1], std, rtol=1e-6)
    assert not np.allclose(part.stats()[0], band_statistics(part.scene)[0])  # not the tile's own
    assert (
        unlabelled_share(parts[0]) == pytest.approx(0.5) and unlabelled_share(Sample("x", part.scene)) == 1.0
    )


def test_tiles_without_one_valid_pixel_are_left_out(pucallpa):
    blank = pucallpa.scene.copy(data=pucallpa.scene.values.copy())
    blank.values[..., :128, :128] = np.nan  # nodata everywhere in the first tile
    parts = cut_tiles(Sample("blank", blank), 128)
    assert [p.origin for p in parts][:2] == [(0, 128), (0, 256)]
