"""TorchGeo's LEVIRCD and LoveDA through rsneo's thin adapters, on minimal on-disk layouts those classes
accept, built from the real LEVIR-CD crops (nothing is downloaded)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from rsneo.data.labelled import change_pairs
from rsneo.data.torchgeo_sets import levircd_pairs, loveda_chips
from rsneo.errors import InputError


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
