"""TorchGeo's LEVIRCD, OSCD, LoveDA and LandCoverAI through rsneo's thin adapters, on minimal on-disk layouts
those classes accept, built from the real LEVIR-CD crops and the Sen1Floods11 chip (nothing is downloaded)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import rasterio
from PIL import Image

from rsneo.data.labelled import change_pairs
from rsneo.data.torchgeo_sets import landcoverai_chips, levircd_pairs, loveda_chips, oscd_pairs
from rsneo.errors import InputError
from rsneo.sensors import get_sensor


def test_levircd_through_torchgeo_gives_the_pairs_rsneo_reads_itself(shared_data):
    via_torchgeo = levircd_pairs(shared_data / "levir_cd", "test")
    own = change_pairs(shared_data / "levir_cd", "test", pixel_size=0.5)
    assert [s.name for s in via_torchgeo] == [s.name for s in own] and len(own) == 5
    for a, b in zip(via_torchgeo, own, strict=True):
        np.testing.assert_array_equal(a.scene.values, b.scene.values)  # the PNGs' own bytes, both ways
        np.testing.assert_array_equal(a.mask, b.mask)
        assert a.classes == b.classes == ("no change", "change") and a.split == "test"
        assert a.scene.attrs["transform"] == b.scene.attrs["transform"]
        assert a.statistics == b.statistics  # the rgb sensor's own statistics (uint8 values), both ways


def test_loveda_masks_become_its_seven_class_names_with_no_data_ignored(shared_data, tmp_path):
    folder = tmp_path / "Val" / "Urban"
    (folder / "images_png").mkdir(parents=True)
    (folder / "masks_png").mkdir()
    label = np.asarray(Image.open(shared_data / "levir_cd/label/test_2_0000_0000.png").convert("L"))
    mask = np.where(label > 0, 2, 7).astype(np.uint8)  # building where LEVIR marks one, else agriculture
    mask[:8] = 0  # a no-data strip
    shutil.copy(shared_data / "levir_cd/A/test_2_0000_0000.png", folder / "images_png" / "1366.png")
    Image.fromarray(mask).save(folder / "masks_png" / "1366.png")
    (chip,) = loveda_chips(tmp_path, "val", scene=["urban"])
    assert chip.name == "1366" and chip.classes[1] == "building" and len(chip.classes) == 7
    np.testing.assert_array_equal(chip.mask, np.where(mask == 0, -1, mask.astype(np.int64) - 1))
    assert chip.scene.shape == (1, 3, 256, 256) and chip.scene.attrs["transform"][0] == 0.3
    with pytest.raises(InputError, match="expected torchgeo's LoveDA layout here"):
        loveda_chips(tmp_path, "train")
    with pytest.raises(InputError, match="test split has no masks"):
        loveda_chips(tmp_path, "test")


def test_landcoverai_tiles_carry_its_five_class_names(shared_data, tmp_path):
    (tmp_path / "output").mkdir()
    Image.open(shared_data / "levir_cd/B/test_2_0000_0000.png").convert("RGB").save(
        tmp_path / "output" / "N-34-1_0.jpg", quality=95
    )
    label = np.asarray(Image.open(shared_data / "levir_cd/label/test_2_0000_0000.png").convert("L"))
    Image.fromarray(np.where(label > 0, 1, 2).astype(np.uint8)).save(tmp_path / "output" / "N-34-1_0_m.png")
    for split, ids in (("train", "N-34-1_0\n"), ("val", ""), ("test", "")):
        (tmp_path / f"{split}.txt").write_text(ids)
    (tile,) = landcoverai_chips(tmp_path, "train")
    assert tile.classes == ("background", "building", "woodland", "water", "road")
    np.testing.assert_array_equal(tile.mask, np.where(label > 0, 1, 2))
    jpeg = np.asarray(Image.open(tmp_path / "output" / "N-34-1_0.jpg"))
    np.testing.assert_array_equal(tile.scene.values[0], np.moveaxis(jpeg, -1, 0))  # the decoded JPEG's values
    with pytest.raises(InputError, match=r"val.txt: split 'val' is empty"):
        landcoverai_chips(tmp_path, "val")


def test_oscd_pairs_are_dated_sentinel2_scenes_with_the_change_map(shared_data, tmp_path):
    images = tmp_path / "Onera Satellite Change Detection dataset - Images" / "spain"
    labels = tmp_path / "Onera Satellite Change Detection dataset - Train Labels" / "spain" / "cm"
    labels.mkdir(parents=True)
    with rasterio.open(shared_data / "sen1floods11/S2/Spain_7370579_S2Hand.tif") as src:
        stack = np.clip(src.read(window=((0, 256), (0, 128))), 0, None).astype(np.uint16)  # (13, 256, 128)
    names = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
    for date, rows in ((1, slice(0, 128)), (2, slice(128, 256))):  # two "dates": two parts of the chip
        (images / f"imgs_{date}_rect").mkdir(parents=True)
        for band, name in enumerate(names):
            Image.fromarray(stack[band, rows]).save(images / f"imgs_{date}_rect" / f"spain_{name}.tif")
    (images / "dates.txt").write_text("date_1: 20170613\ndate_2: 20180613\n")
    change = np.zeros((128, 128), np.uint8)
    change[40:60, 10:90] = 255
    Image.fromarray(change).save(labels / "cm.png")
    (pair,) = oscd_pairs(tmp_path, "train", bands=["B04", "B03", "B02", "B08"])
    assert pair.name == "spain" and pair.scene.shape == (2, 4, 128, 128)
    assert [str(d)[:10] for d in pair.scene["time"].values] == ["2017-06-13", "2018-06-13"]
    assert list(pair.scene["band"].values) == ["B04", "B03", "B02", "B08"]
    np.testing.assert_array_equal(pair.scene.values[1, 0], stack[3, 128:256])  # date 2, red
    np.testing.assert_array_equal(pair.mask, (change > 0).astype(np.int64))
    assert pair.statistics["scene"][0][0] == pytest.approx(get_sensor("sentinel2_l1c").band("B04").mean)
