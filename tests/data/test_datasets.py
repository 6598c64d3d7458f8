"""TorchGeo datasets and samplers over the real sample archives."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from torch.utils.data import DataLoader
from torchgeo.datasets import stack_samples
from torchgeo.samplers import GridGeoSampler, RandomGeoSampler

from rsneo.data.datasets import (
    BigEarthNetChips,
    Sen1Floods11Chips,
    SensorRaster,
    random_raster_samples,
    sample_scene,
)
from rsneo.data.frames import scene_frames
from rsneo.errors import InputError

NAIP_REGEX = r"m_\d+_se_\d+_\d_(?P<date>\d{8})\.tif"


def test_grid_sampler_chip_equals_a_plain_rasterio_window(shared_data):
    ds = SensorRaster(
        shared_data / "timeseries/naip_m4709963", "naip", filename_regex=NAIP_REGEX, bands=["NIR", "R"]
    )
    query = next(iter(GridGeoSampler(ds, size=64, stride=64)))
    sample = ds[query]
    assert sample["image"].shape == (2, 64, 64) and sample["bands"] == ["NIR", "R"]
    np.testing.assert_allclose(sample["wavelengths"].numpy(), [0.835, 0.635], rtol=1e-6)
    path = shared_data / "timeseries/naip_m4709963/m_4709963_se_14_1_20090818.tif"
    with rasterio.open(path) as src:
        row, col = src.index(query[0].start + 1, query[1].stop - 1)
        want = src.read([4, 1], window=((row, row + 64), (col, col + 64))).astype(np.float32)
    want[want == 0] = np.nan  # NAIP nodata 0
    np.testing.assert_array_equal(sample["image"].numpy(), want)
    scene = sample_scene(sample)
    assert str(scene["time"].values[0])[:10] == "2009-08-18" and scene.attrs["transform"][0] == 5.0


def test_random_sampler_batches_through_a_dataloader_into_frames(shared_data):
    ds = SensorRaster(shared_data / "timeseries/naip_m4709963", "naip", filename_regex=NAIP_REGEX)
    sampler = RandomGeoSampler(ds, size=64, length=4)
    batch = next(iter(DataLoader(ds, sampler=sampler, batch_size=4, collate_fn=stack_samples)))
    assert batch["image"].shape == (4, 4, 64, 64)
    frames = scene_frames(sample_scene({k: v[0] for k, v in batch.items() if k in ("image", "crs", "bounds")}
                                       | {"sensor": "naip", "bands": ["R", "G", "B", "NIR"]}))  # fmt: skip
    assert [g.band_keys for g in frames[0].groups] == [("red", "green", "blue"), ("nir",)]


def test_sen1floods11_chips_have_s2_s1_and_water_mask(shared_data):
    ds = Sen1Floods11Chips(shared_data / "sen1floods11")
    sample = ds[0]
    assert (
        len(ds) == 1 and sample["image"].shape == (13, 512, 512) and sample["image_s1"].shape == (2, 512, 512)
    )
    with rasterio.open(shared_data / "sen1floods11/Labels/Spain_7370579_LabelHand.tif") as src:
        assert torch.equal(sample["mask"], torch.from_numpy(src.read(1).astype(np.int64)))
    assert sample["bands"][8] == "B8A"


def test_bigearthnet_chips_have_multi_hot_labels(shared_data):
    ds = BigEarthNetChips(shared_data / "bigearthnet/BigEarthNet-S2-Example")
    assert len(ds) == 6
    sample = ds[0]
    assert sample["image"].shape == (12, 120, 120) and sample["date"] is not None
    assert [ds.classes[i] for i in sample["label"].nonzero().flatten()] == sorted(sample["labels"])


def test_random_raster_samples_are_seeded_and_leave_the_global_generator_alone(shared_data):
    folder = shared_data / "timeseries/naip_m4709963"
    state = torch.random.get_rng_state()
    first = random_raster_samples(folder, "naip", 64, 3, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    again = random_raster_samples(folder, "naip", 64, 3, seed=5)
    other = random_raster_samples(folder, "naip", 64, 3, seed=6)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(first, again, strict=True))
    assert [a["bounds"] for a in first] != [b["bounds"] for b in other]
    scene = sample_scene(first[0])  # no date pattern: the index spans all time, the scene has no date
    assert np.isnat(scene["time"].values[0]) and scene.shape == (1, 4, 64, 64)


def test_sensor_raster_over_a_folder_without_geotiffs_names_it(tmp_path):
    with pytest.raises(InputError, match="expected GeoTIFFs"):
        SensorRaster(tmp_path, "naip")
