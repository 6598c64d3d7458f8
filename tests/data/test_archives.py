"""The one Sen1Floods11 layout parser: the real sample's files, optional parts, the empty-folder error."""

from __future__ import annotations

import shutil

import pytest

from rsneo.data.archives import sen1floods11_chips
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
