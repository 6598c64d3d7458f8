"""The archive layout parsers (Sen1Floods11, BigEarthNet, time series): real samples' files, optional parts,
the empty-folder errors."""

from __future__ import annotations

import shutil

import pytest

from rsneo.data.archives import bigearthnet_patches, bigearthnet_s1_folder, date_rasters, sen1floods11_chips
from rsneo.errors import InputError


def test_sen1floods11_chip_names_its_three_files(shared_data):
    root = shared_data / "sen1floods11"
    (chip,) = sen1floods11_chips(root)
    assert chip.stem == "Spain_7370579"
    assert chip.s2 == root / "S2" / "Spain_7370579_S2Hand.tif"
    assert chip.s1 == root / "S1" / "Spain_7370579_S1Hand.tif"
    assert chip.label == root / "Labels" / "Spain_7370579_LabelHand.tif"
    assert chip.s1.is_file() and chip.label.is_file()


def test_chips_sort_by_name_and_optional_parts_may_be_absent(shared_data, tmp_path):
    (tmp_path / "S2").mkdir()
    s2 = shared_data / "sen1floods11" / "S2" / "Spain_7370579_S2Hand.tif"
    for stem in ("Zambia_2", "Bolivia_1"):  # S2 only: no S1, no labels
        shutil.copy(s2, tmp_path / "S2" / f"{stem}_S2Hand.tif")
    chips = sen1floods11_chips(tmp_path)
    assert [c.stem for c in chips] == ["Bolivia_1", "Zambia_2"]
    assert not any(c.s1.exists() or c.label.exists() for c in chips)


def test_a_folder_without_s2_chips_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=r"expected S2/\*_S2Hand.tif chips \(Sen1Floods11 layout\)"):
        sen1floods11_chips(tmp_path)


def test_bigearthnet_patches_carry_their_labels_and_find_their_sentinel1_partner(shared_data, tmp_path):
    base = shared_data / "bigearthnet"
    patches = bigearthnet_patches(base / "BigEarthNet-S2-Example")
    assert [p.folder.name for p in patches][:2] == [
        "S2A_MSIL2A_20170613T101031_87_48",
        "S2A_MSIL2A_20170617T113321_36_85",
    ]
    assert len(patches) == 6 and all(p.labels for p in patches)
    s1 = bigearthnet_s1_folder(patches[0], base / "BigEarthNet-S1-Example")
    assert s1 == base / "BigEarthNet-S1-Example" / "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48"
    # matched on whole name fields: "_4_55" (not any name that merely ends in "4_55", e.g. "14_55")
    four = next(p for p in patches if p.folder.name.endswith("_4_55"))
    assert bigearthnet_s1_folder(four, base / "BigEarthNet-S1-Example").name.endswith("_29UPU_4_55")
    band = next(patches[0].folder.glob("*_B02.tif"))
    (tmp_path / "patch").mkdir()
    shutil.copy(band, tmp_path / "patch")  # no labels metadata: labels None, not an empty list
    (unlabelled,) = bigearthnet_patches(tmp_path)
    assert unlabelled.labels is None and bigearthnet_s1_folder(unlabelled, tmp_path / "none") is None
    with pytest.raises(InputError, match="expected BigEarthNet patch folders"):
        bigearthnet_patches(tmp_path / "patch")


def test_date_rasters_are_a_places_rasters_by_name_without_other_files(shared_data):
    folder = shared_data / "timeseries" / "landsat_pucallpa"
    paths = date_rasters(folder)
    assert [p.name for p in paths] == [f"{y}.tif" for y in range(1985, 2021, 5)]
    assert (folder / "README.md").is_file()  # beside the rasters, left out
