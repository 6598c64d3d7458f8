"""Scenes to frames: normalisation with the sensor's statistics, band groups, padding, dates."""

from __future__ import annotations

import numpy as np
import pytest

from rsneo.data.frames import frame_groups, normalise, scene_frames
from rsneo.io.scene import read_scene
from rsneo.sensors import get_sensor

S2HAND = "sen1floods11/S2/Spain_7370579_S2Hand.tif"


def test_normalise_uses_the_sensor_statistics_and_zeroes_nodata(shared_data):
    scene = read_scene(shared_data / "rasters/RGB.byte.tif", window=(300, 300, 64, 64))
    values = normalise(scene)
    red = get_sensor("rgb").band("red")
    np.testing.assert_allclose(values[0, 0], (scene.values[0, 0] - red.mean) / red.std, rtol=1e-6)
    edge = normalise(read_scene(shared_data / "rasters/RGB.byte.tif", window=(0, 0, 200, 200)))
    assert (
        edge[np.isnan(read_scene(shared_data / "rasters/RGB.byte.tif", window=(0, 0, 200, 200)).values)] == 0
    ).all()


def test_eight_bit_composite_of_a_reflectance_sensor_uses_its_own_statistics(shared_data):
    scene = read_scene(
        shared_data / "timeseries/landsat_pucallpa/2020.tif",
        sensor="landsat5_tm",
        bands=["B5", "B4", "B3", "B2"],
    )
    values = normalise(scene)
    valid = ~np.isnan(scene.values)
    assert abs(values[valid].mean()) < 0.05 and abs(values[0, 0][valid[0, 0]].std() - 1) < 0.05


def test_s2_frame_has_the_sensor_groups_with_wavelengths_and_common_names(shared_data):
    scene = read_scene(shared_data / S2HAND, window=(0, 0, 64, 96))
    [frame] = scene_frames(scene, captions=True)
    keys = [g.band_keys for g in frame.groups]
    assert keys[0] == ("red", "green", "blue") and ("nir", "nir08") in keys and ("swir16", "swir22") in keys
    rgb = frame.groups[0]
    assert rgb.pixels.shape == (3, 96, 64) and rgb.grid == (3, 2)
    np.testing.assert_allclose(rgb.wavelengths.numpy(), [0.665, 0.56, 0.49], rtol=1e-6)
    assert frame.num_tokens == 5 * 6 and frame.caption == "unknown date sentinel2_l1c:"


def test_sizes_are_padded_to_32_and_dates_become_days(shared_data):
    files = sorted((shared_data / "timeseries/naip_m4709963").glob("*.tif"))[:2]
    scene = read_scene(files, window=(0, 0, 50, 40))
    frames = scene_frames(scene, groups={"rgbn": ["R", "G", "B", "NIR"]})
    [group] = frames[1].groups
    assert group.pixels.shape == (4, 64, 64) and (group.pixels[:, 40:, :] == 0).all()
    assert group.time == float((np.datetime64("2010-06-29") - np.datetime64("1970-01-01")).astype(int))
    assert frames[0].groups[0].time < group.time


def test_groups_naming_bands_the_scene_lacks_are_refused(shared_data):
    scene = read_scene(shared_data / S2HAND, subset=["B04", "B03", "B02"], window=(0, 0, 32, 32))
    with pytest.raises(Exception, match=r"band groups name bands \['B08'\] that the scene does not hold"):
        frame_groups(scene, normalise(scene), 0, groups={"nir": ["B08"]})
