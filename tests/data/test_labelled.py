"""`rsneo.data.labelled` (the minimal version evaluation codes against): class tables, change pairs with 0/255
labels read as classes, image/mask chips, and refusals that name the file."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from rsneo.data.labelled import ClassTable, change_pairs
from rsneo.errors import InputError


def test_class_tables_parse_values_names_and_the_ignore_value():
    table = ClassTable.parse(" 1=water, 2 = forest ,ignore=255")
    assert table == ClassTable({1: "water", 2: "forest"}, 255)
    assert ClassTable.binary_change().names == {0: "no change", 1: "change"}
    with pytest.raises(InputError, match="expected VALUE=NAME entries .* got 'forest'"):
        ClassTable.parse("1=water,forest")


def test_change_pairs_read_both_dates_and_labels_of_255_as_change(levir_folder, shared_data):
    root = levir_folder(("test_2_0000_0000",), {"test": ("test_2_0000_0000",)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PNGs without georeference: pixel units, warned about elsewhere
        [pair] = change_pairs(root, "test")
    label = np.asarray(Image.open(shared_data / "levir_cd" / "label" / "test_2_0000_0000.png"))
    label = label if label.ndim == 2 else label[..., 0]
    np.testing.assert_array_equal(pair.mask, (label == 255).astype(np.int64))
    assert pair.scene.sizes["time"] == 2 and pair.classes == ("no change", "change") and pair.split == "test"


@pytest.mark.filterwarnings("ignore::rsneo.io.read.PixelUnitsWarning")  # PNG pairs: expected, not tested here
def test_missing_partners_unknown_label_values_and_empty_splits_are_refused(levir_folder):
    root = levir_folder(("test_2_0000_0000", "test_7_0256_0512"), {"val": ()})
    with pytest.raises(InputError, match="val.txt: the split 'val' lists no sample"):
        change_pairs(root, "val")
    with pytest.raises(InputError, match=r"label values \[255\] are not in the class table"):
        change_pairs(root, classes=ClassTable({0: "unchanged", 1: "new building"}))  # 255 is not a value here
    (root / "B" / "test_7_0256_0512.png").unlink()
    with pytest.raises(InputError, match="test_7_0256_0512.png: no partner file test_7_0256_0512"):
        change_pairs(root)
