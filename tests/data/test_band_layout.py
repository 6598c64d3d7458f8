"""`rsneo.data.frames.band_layout`: how the bands of a real raster become the model's normalised band groups
(wavelength order, groups as the sensor defines them or folded into one, statistics), and the size of reduced
reads (`rsneo.io.windows`)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from rsneo.data.frames import band_layout, model_band_groups
from rsneo.errors import InputError
from rsneo.sensors import get_sensor

S2 = "sen1floods11/S2/Spain_7370579_S2Hand.tif"
LANDSAT = "landsat_change_taizhou/2000TM"


def test_sentinel2_layout_in_file_order_with_the_sensors_groups(shared_data):
    layout = band_layout(shared_data / S2)
    sensor = get_sensor("sentinel2_l1c")
    assert layout.sensor == "sentinel2_l1c" and layout.band_names == tuple(sensor.band_names)
    assert layout.wavelengths == tuple(b.wavelength for b in sensor.bands)
    assert list(layout.wavelengths[:4]) == pytest.approx([0.443, 0.49, 0.56, 0.665])
    assert layout.keys[1:4] == ("blue", "green", "red")
    # each group of the sensor, as file-order indices, every band exactly once
    by_name = {name: i for i, name in enumerate(layout.band_names)}
    assert layout.groups == tuple(tuple(by_name[b] for b in members) for members in sensor.groups.values())
    assert sorted(i for g in layout.groups for i in g) == list(range(13))
    assert layout.groups[0] == (3, 2, 1)  # red, green, blue
    # uint16 reflectances: standardised with the sensor's statistics, as training does
    assert layout.mean == tuple(b.mean for b in sensor.bands) and layout.std == tuple(
        b.std for b in sensor.bands
    )
    assert layout.rgb_bands() == [3, 2, 1]


def test_fold_puts_every_band_in_one_group_in_the_sensors_group_order(shared_data):
    sensor_layout = band_layout(shared_data / S2)
    folded = band_layout(shared_data / S2, band_groups="fold")
    assert folded.groups == (tuple(i for g in sensor_layout.groups for i in g),)
    assert (folded.band_names, folded.mean) == (sensor_layout.band_names, sensor_layout.mean)


def test_an_8_bit_landsat_stretch_is_standardised_with_its_own_statistics(shared_data):
    layout = band_layout(shared_data / LANDSAT)
    assert layout.sensor == "landsat7_etm" and layout.band_names == ("B1", "B2", "B3", "B4", "B5", "B7")
    assert list(layout.wavelengths) == sorted(layout.wavelengths)  # file order is wavelength order here
    assert layout.groups == ((2, 1, 0), (3,), (4, 5)) and layout.date == "2000-03-17"
    with rasterio.open(shared_data / LANDSAT) as src:  # 400 x 400 pixels: the statistics read it whole
        assert max(src.width, src.height) <= 1024
        data = src.read().astype(np.float64)
        valid = src.dataset_mask() > 0
    values = data[:, valid]
    np.testing.assert_allclose(layout.mean, values.mean(1), rtol=1e-9)
    np.testing.assert_allclose(layout.std, values.std(1), rtol=1e-9)
    assert all(s > 1 for s in layout.std)  # not the sensor's reflectance statistics (thousands)


def test_images_are_one_standardised_group_each_with_invalid_pixels_zero(shared_data):
    layout = band_layout(shared_data / S2)
    with rasterio.open(shared_data / S2) as src:
        pixels = src.read(window=((0, 32), (0, 64))).astype(np.float32)  # (13, 32, 64)
    valid = np.ones((32, 64), bool)
    valid[0, :5] = False
    images = layout.images(pixels, valid)
    assert [im.band_keys for im in images][0] == ("red", "green", "blue")
    assert [tuple(im.pixels.shape) for im in images][:2] == [(3, 32, 64), (3, 32, 64)]
    red = images[0].pixels[0]
    expected = (pixels[3] - layout.mean[3]) / layout.std[3]
    torch.testing.assert_close(red[1:], torch.from_numpy(expected[1:]), rtol=1e-6, atol=1e-6)
    assert red[0, :5].abs().sum() == 0 and images[0].time is None  # the chip's date is unknown
    assert images[0].wavelengths.tolist() == pytest.approx([0.665, 0.56, 0.49])


def test_model_band_groups_as_trained_and_sensor_by_default():
    from rsneo.model.config import RSNeoConfig

    assert model_band_groups(RSNeoConfig()) == "sensor"  # the bundled model: no record
    assert model_band_groups(RSNeoConfig(band_groups="fold")) == "fold"
    with pytest.raises(InputError, match="model config band_groups: expected one of"):
        model_band_groups(RSNeoConfig(band_groups="bands"))
