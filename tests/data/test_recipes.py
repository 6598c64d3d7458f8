"""`rsneo.data.recipes`: archive layouts become items, items are checked from their headers, and an item
loads as tiles whose arrays are the archive's own pixels on the archive's own grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine

from rsneo.data.recipes import RECIPES, tiles
from rsneo.errors import InputError

S2 = "sen1floods11/S2/Spain_7370579_S2Hand.tif"
LABEL = "sen1floods11/Labels/Spain_7370579_LabelHand.tif"


def test_tiles_are_row_major_and_drop_the_partial_edge():
    assert tiles(300, 520, 256) == [(slice(0, 256), slice(0, 256)), (slice(0, 256), slice(256, 512))]
    assert tiles(100, 80, 256) == [(slice(0, 100), slice(0, 80))]  # smaller than a tile: one window
    assert len(tiles(512, 512, 128)) == 16


def test_sen1floods11_chip_loads_as_tiles_of_its_own_pixels(shared_data):
    recipe = RECIPES["sen1floods11"]
    (item,) = recipe.items(shared_data / "sen1floods11", 256)
    recipe.check(item)
    samples = recipe.load(item)
    assert [s.key for s in samples] == [f"Spain_7370579_S2Hand_r{r}_c{c}" for r in (0, 256) for c in (0, 256)]
    last = samples[3]  # rows 256:512, cols 256:512
    assert last.arrays["image"].shape == (1, 13, 256, 256) and last.arrays["image_s1"].shape == (
        1,
        2,
        256,
        256,
    )
    with rasterio.open(shared_data / S2) as src, rasterio.open(shared_data / LABEL) as lab:
        b04 = src.read(4, window=((256, 512), (256, 512))).astype(np.float32)
        label = lab.read(1, window=((256, 512), (256, 512)))
        corner = src.transform * (256, 256)
    np.testing.assert_array_equal(last.arrays["image"][0, 3], b04)
    np.testing.assert_array_equal(last.arrays["mask"], label)  # -1 (no data), 0, 1 as hand-labelled
    assert last.arrays["mask"].dtype == np.int16
    meta = last.meta["arrays"]["image"]
    assert meta["sensor"] == "sentinel2_l1c" and meta["bands"][3] == "B04"
    assert Affine(*meta["transform"]) * (0, 0) == pytest.approx(corner)  # the tile's own corner
    assert last.meta["classes"] == ["not water", "water"] and last.meta["mask_nodata"] == -1


def test_timeseries_of_unnamed_rasters_needs_the_sensor_and_then_stacks_every_date(shared_data):
    recipe = RECIPES["timeseries"]
    root = shared_data / "timeseries/landsat_pucallpa"  # 1985.tif ... 2020.tif, 4 bands each
    (unnamed,) = recipe.items(root, 128)
    with pytest.raises(InputError, match=r"1985.tif: cannot tell which sensor made this raster"):
        recipe.check(unnamed)
    (item,) = recipe.items(root, 128, sensor="landsat5_tm", bands=["B5", "B4", "B3", "B2"])
    recipe.check(item)
    samples = recipe.load(item)
    assert len(samples) == len(tiles(377, 697, 128)) == 10
    first = samples[0].arrays["image"]
    assert first.shape == (8, 4, 128, 128)  # (dates, bands, tile, tile)
    assert samples[0].meta["arrays"]["image"]["dates"][:2] == ["1985-01-01", "1990-01-01"]


def test_empty_archives_and_bad_caption_lists_are_refused_naming_them(tmp_path):
    with pytest.raises(InputError, match=f"{tmp_path}: expected BigEarthNet patch folders"):
        RECIPES["bigearthnet"].items(tmp_path, 120)
    with pytest.raises(InputError, match=f"{tmp_path}: expected folders of GeoTIFFs"):
        RECIPES["timeseries"].items(tmp_path, 64)
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"image": "a.png"}))
    with pytest.raises(InputError, match=r"captions.json: expected a JSON list of"):
        RECIPES["captions"].items(captions, 64)
    captions.write_text("[{")
    with pytest.raises(
        InputError, match=r"captions.json: expected a captions JSON list .* could not read it"
    ):
        RECIPES["captions"].items(captions, 64)


def test_every_recipe_is_registered_with_a_default_shard_size():
    assert set(RECIPES) == {"sen1floods11", "bigearthnet", "timeseries", "captions"}
    assert all(r.items_per_shard >= 1 and r.description for r in RECIPES.values())
