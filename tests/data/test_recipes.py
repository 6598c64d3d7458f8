"""`rsneo.data.recipes`: archive layouts become items, items are checked from their headers, and an item
loads as `Sample` tiles whose arrays are the archive's own pixels on the archive's own grid, with the
archive's one class table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine

from rsneo.data.recipes import RECIPES, load_tiles, read_archive
from rsneo.data.sample import tiles
from rsneo.errors import InputError

S2 = "sen1floods11/S2/Spain_7370579_S2Hand.tif"
LABEL = "sen1floods11/Labels/Spain_7370579_LabelHand.tif"


def test_tiles_are_row_major_and_drop_the_partial_edge():
    assert tiles(300, 520, 256) == [(slice(0, 256), slice(0, 256)), (slice(0, 256), slice(256, 512))]
    assert tiles(100, 80, 256) == [(slice(0, 100), slice(0, 80))]  # smaller than a tile: one window
    assert len(tiles(512, 512, 128)) == 16


def test_sen1floods11_chip_loads_as_tiles_of_its_own_pixels(shared_data):
    recipe = RECIPES["sen1floods11"]
    (item,) = recipe.items(shared_data / "sen1floods11")
    recipe.check(item)
    samples = load_tiles("sen1floods11", 256, item)
    assert [s.name for s in samples] == [f"Spain_7370579_r{r}_c{c}" for r in (0, 256) for c in (0, 256)]
    assert [s.split for s in samples] == ["train", "val", "train", "val"]  # left half, right half
    last = samples[3]  # rows 256:512, cols 256:512
    assert last.scene.shape == (1, 13, 256, 256) and last.partners["sentinel1"].shape == (1, 2, 256, 256)
    with rasterio.open(shared_data / S2) as src, rasterio.open(shared_data / LABEL) as lab:
        b04 = src.read(4, window=((256, 512), (256, 512))).astype(np.float32)
        label = lab.read(1, window=((256, 512), (256, 512)))
        corner = src.transform * (256, 256)
    np.testing.assert_array_equal(last.scene.values[0, 3], b04)
    np.testing.assert_array_equal(last.mask, label)  # -1 (no data), 0 land, 1 water: indices as labelled
    assert last.mask.dtype == np.int64 and last.origin == (256, 256)
    assert last.scene.attrs["sensor"] == "sentinel2_l1c" and str(last.scene["band"].values[3]) == "B04"
    assert Affine(*last.scene.attrs["transform"]) * (0, 0) == pytest.approx(corner)  # the tile's own corner
    assert last.classes == ("land", "water")  # one table for the archive (rsneo.heads.class_words)


def test_timeseries_of_unnamed_rasters_needs_the_sensor_and_then_stacks_every_date(shared_data):
    recipe = RECIPES["timeseries"]
    root = shared_data / "timeseries/landsat_pucallpa"  # 1985.tif ... 2020.tif, 4 bands each
    (unnamed,) = recipe.items(root)
    with pytest.raises(InputError, match=r"1985.tif: cannot tell which sensor made this raster"):
        recipe.check(unnamed)
    (item,) = recipe.items(root, sensor="landsat5_tm", bands=["B5", "B4", "B3", "B2"])
    recipe.check(item)
    samples = load_tiles("timeseries", 128, item)
    assert len(samples) == len(tiles(377, 697, 128)) == 10
    assert samples[0].scene.shape == (8, 4, 128, 128)  # (dates, bands, tile, tile)
    assert [str(d)[:10] for d in samples[0].scene["time"].values[:2]] == ["1985-01-01", "1990-01-01"]
    # an 8-bit stretch standardises on the whole series' statistics, recorded in every tile
    assert {s.statistics["scene"] for s in samples} == {samples[0].statistics["scene"]}


def test_empty_archives_and_bad_caption_lists_are_refused_naming_them(tmp_path):
    with pytest.raises(InputError, match=f"{tmp_path}: expected BigEarthNet patch folders"):
        RECIPES["bigearthnet"].items(tmp_path)
    with pytest.raises(InputError, match=f"{tmp_path}: expected folders of GeoTIFFs"):
        RECIPES["timeseries"].items(tmp_path)
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"image": "a.png"}))
    with pytest.raises(InputError, match=r"captions.json: expected a JSON list of"):
        RECIPES["captions"].items(captions)
    captions.write_text("[{")
    with pytest.raises(
        InputError, match=r"captions.json: expected a captions JSON list .* could not read it"
    ):
        RECIPES["captions"].items(captions)


def test_every_recipe_is_registered_with_a_default_shard_size():
    assert set(RECIPES) == {
        "sen1floods11", "bigearthnet", "timeseries", "taizhou", "captions", "change", "segmentation",
    }  # fmt: skip
    assert all(r.items_per_shard >= 1 and r.description for r in RECIPES.values())


def test_taizhou_reference_becomes_a_change_mask_of_the_checked_pixels(shared_data):
    from PIL import Image

    samples = read_archive("taizhou", shared_data / "landsat_change_taizhou", 400)
    (pair,) = samples
    root = shared_data / "landsat_change_taizhou"
    changed = np.asarray(Image.open(root / "change.bmp").convert("L")) > 0
    assert pair.scene.sizes["time"] == 2 and pair.classes == ("no change", "change")
    assert int((pair.mask == 1).sum()) == int(changed.sum()) == 4227  # the README's count
    assert int((pair.mask == 0).sum()) == 17163 and set(np.unique(pair.mask).tolist()) == {-1, 0, 1}


def test_captions_give_one_sample_per_distinct_caption_and_bigearthnet_a_sentinel1_partner(shared_data):
    captions = read_archive("captions", shared_data / "text/rsicd_mini", 64)
    manifest = json.loads((shared_data / "text/rsicd_mini/manifest.json").read_text())
    assert len(captions) == sum(len(dict.fromkeys(e["captions"])) for e in manifest)
    assert all(len(s.captions) == 1 and s.scene.shape[-2:] == (64, 64) for s in captions)
    patches = read_archive("bigearthnet", shared_data / "bigearthnet", 64)
    assert len(patches) == 6 and all(s.partners["sentinel1"].shape == (1, 2, 64, 64) for s in patches)
    assert all(s.labels and s.scene.shape == (1, 12, 64, 64) for s in patches)
