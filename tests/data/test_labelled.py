"""Labelled archives: LEVIR-CD pairs in the A/ B/ label/ [list/] layout and image/mask rasters with a class
table, read as Samples whose classes are text; every bad input an InputError naming the file."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.warp import Resampling, calculate_default_transform, reproject

from rsneo.data.labelled import ClassTable, change_pairs, mask_chips
from rsneo.errors import InputError
from rsneo.io.read import PixelUnitsWarning

S2 = "sen1floods11/S2/Spain_7370579_S2Hand.tif"
LABEL = "sen1floods11/Labels/Spain_7370579_LabelHand.tif"


@pytest.fixture(autouse=True)
def _quiet_pixel_units():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LEVIR's PNGs have no georeference: warned about, on purpose
        yield


def _levir_copy(shared_data: Path, to: Path, names: list[str] | None = None) -> Path:
    for folder in ("A", "B", "label"):
        (to / folder).mkdir(parents=True)
        for path in sorted((shared_data / "levir_cd" / folder).iterdir()):
            if names is None or path.stem in names:
                shutil.copy(path, to / folder / path.name)
    return to


def test_class_table_parses_values_names_and_the_ignored_value():
    table = ClassTable.parse("1=water, 2=forest,ignore=255")
    assert table.names == {1: "water", 2: "forest"} and table.ignore == 255
    assert table.classes == ("water", "forest")
    values = np.array([[1, 2], [255, 1]], dtype=np.uint8)
    np.testing.assert_array_equal(table.indices(values, "m.tif"), [[0, 1], [-1, 0]])
    change = ClassTable.binary_change()
    assert change.classes == ("no change", "change")
    np.testing.assert_array_equal(change.indices(np.array([0, 1, 255]), "l.png"), [0, 1, 1])  # 255 read as 1
    for bad, message in (("water", "expected entries VALUE=NAME"), ("", "at least one"),
                         ("1=a,1=b", "named twice"), ("1=a,ignore=1", "both ignored and named")):  # fmt: skip
        with pytest.raises(InputError, match=f"--classes: .*{message}"):
            ClassTable.parse(bad)
    with pytest.raises(InputError, match=r"m.tif: holds mask values \[3, 7\] outside the class table"):
        table.indices(np.array([1, 3, 7, 2]), "m.tif")


def test_levir_pairs_hold_both_dates_pixel_for_pixel_and_the_label_as_change_indices(shared_data):
    pairs = change_pairs(shared_data / "levir_cd", pixel_size=0.5)
    assert len(pairs) == 8 and pairs[0].name == "test_102_0512_0000"
    assert [p.split for p in pairs].count("test") == 5 and [p.split for p in pairs].count("train") == 3
    pair = pairs[0]
    a = np.asarray(Image.open(shared_data / "levir_cd/A/test_102_0512_0000.png").convert("RGB"))
    b = np.asarray(Image.open(shared_data / "levir_cd/B/test_102_0512_0000.png").convert("RGB"))
    label = np.asarray(Image.open(shared_data / "levir_cd/label/test_102_0512_0000.png").convert("L"))
    assert pair.scene.shape == (2, 3, 256, 256) and pair.scene.attrs["sensor"] == "rgb"
    np.testing.assert_array_equal(pair.scene.values[0], np.moveaxis(a, -1, 0))
    np.testing.assert_array_equal(pair.scene.values[1], np.moveaxis(b, -1, 0))
    np.testing.assert_array_equal(pair.mask, (label == 255).astype(np.int64))  # 0/255 -> 0/1 indices
    assert pair.classes == ("no change", "change") and pair.mask.dtype == np.int64
    assert pair.scene.attrs["transform"][:5] == (0.5, 0.0, 0.0, 0.0, -0.5)  # --pixel-size 0.5 (LEVIR-CD)
    with pytest.warns(PixelUnitsWarning, match=r"levir_cd/A has no georeference") as caught:
        train = change_pairs(shared_data / "levir_cd", "train")  # no pixel_size: areas in pixels, said once
    assert len([w for w in caught if w.category is PixelUnitsWarning]) == 1
    assert [p.name for p in train] == [
        "train_36_0512_0512", "train_386_0512_0768", "train_412_0512_0768",
    ]  # fmt: skip


def test_list_files_give_the_split_and_an_empty_split_is_refused(shared_data, tmp_path):
    root = _levir_copy(shared_data, tmp_path / "cd")
    (root / "list").mkdir()
    (root / "list" / "train.txt").write_text("test_2_0000_0000.png\ntrain_36_0512_0512.png\n")
    (root / "list" / "val.txt").write_text("test_55_0256_0000.png\n")
    (root / "list" / "test.txt").write_text("")
    assert [p.name for p in change_pairs(root, "train")] == ["test_2_0000_0000", "train_36_0512_0512"]
    assert {p.name: p.split for p in change_pairs(root)}["test_55_0256_0000"] == "val"
    with pytest.raises(InputError, match=r"list/test.txt: split 'test' is empty"):
        change_pairs(root, "test")


def test_bad_pairs_are_input_errors_naming_the_file(shared_data, tmp_path):
    root = _levir_copy(shared_data, tmp_path / "cd", ["test_2_0000_0000", "test_7_0256_0512"])
    (root / "B" / "test_7_0256_0512.png").unlink()
    with pytest.raises(InputError, match=r"A/test_7_0256_0512.png: has no partner in .*B"):
        change_pairs(root)
    shutil.copy(shared_data / "levir_cd/B/test_7_0256_0512.png", root / "B")
    small = Image.open(root / "B" / "test_2_0000_0000.png").crop((0, 0, 200, 256))
    small.save(root / "B" / "test_2_0000_0000.png")
    with pytest.raises(InputError, match=r"B/test_2_0000_0000.png: is 200x256 pixels .* expected the grid"):
        change_pairs(root)
    shutil.copy(shared_data / "levir_cd/B/test_2_0000_0000.png", root / "B")
    label = np.asarray(Image.open(root / "label" / "test_7_0256_0512.png").convert("L")).copy()
    label[0, 0] = 128
    Image.fromarray(label).save(root / "label" / "test_7_0256_0512.png")
    with pytest.raises(InputError, match=r"label/test_7_0256_0512.png: holds mask values \[128\]"):
        change_pairs(root)
    table = ClassTable.parse("0=unchanged,128=new road,255=new building")  # semantic change
    pairs = change_pairs(root, classes=table)
    assert pairs[1].classes == ("unchanged", "new road", "new building") and pairs[1].mask[0, 0] == 1


def test_masks_by_name_are_cut_into_chips_with_their_class_names(shared_data, tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    shutil.copy(shared_data / S2, images / "spain.tif")
    shutil.copy(shared_data / LABEL, masks / "spain.tif")
    table = ClassTable.parse("0=land,1=water,ignore=-1")
    chips = mask_chips(images, masks, table, chip=128, split="train")
    assert len(chips) == 16 and {c.split for c in chips} == {"train"} and chips[5].origin == (128, 128)
    with rasterio.open(shared_data / LABEL) as src:
        want = src.read(1)[128:256, 128:256]
    np.testing.assert_array_equal(chips[5].mask, want)  # -1 ignore, 0 land, 1 water: indices as labelled
    assert chips[5].classes == ("land", "water") and chips[5].scene.shape == (1, 13, 128, 128)
    (masks / "spain.tif").rename(masks / "other.tif")
    with pytest.raises(InputError, match=r"masks/other.tif: has no partner in .*images"):
        mask_chips(images, masks, table)
    with pytest.raises(InputError, match=r"LabelHand.tif: holds mask values \[-1\] outside the class table"):
        mask_chips(shared_data / S2, shared_data / LABEL, ClassTable.parse("0=land,1=water"))


def _reprojected(src_path: Path, out: Path, crs: str, shift: float = 0.0) -> Path:
    """The label raster warped into another CRS (nearest), optionally moved `shift` CRS units east."""
    with rasterio.open(src_path) as src:
        size = (src.width, src.height)
        transform, width, height = calculate_default_transform(src.crs, crs, *size, *src.bounds)
        data = np.full((height, width), -1, dtype=np.int16)
        reproject(src.read(1), data, src_transform=src.transform, src_crs=src.crs, dst_transform=transform,
                  dst_crs=crs, resampling=Resampling.nearest, src_nodata=None, dst_nodata=-1)  # fmt: skip
        profile = src.profile | {"crs": crs, "transform": transform, "width": width, "height": height}
    if shift:
        profile["transform"] = transform.translation(shift, 0) * transform
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data, 1)
    return out


def test_a_mask_in_another_crs_is_matched_by_geography_and_one_elsewhere_refused(shared_data, tmp_path):
    table = ClassTable.parse("0=land,1=water,ignore=-1")
    utm = _reprojected(shared_data / LABEL, tmp_path / "utm.tif", "EPSG:32630")
    (whole,) = mask_chips(shared_data / S2, utm, table)
    with rasterio.open(shared_data / LABEL) as src:
        original = src.read(1).astype(np.int64)
    inside = (whole.mask >= 0) & (original[: whole.mask.shape[0], : whole.mask.shape[1]] >= 0)
    # warped there and back with nearest neighbour: the same class on all but the edge pixels of each patch
    agreement = (whole.mask[inside] == original[: whole.mask.shape[0], : whole.mask.shape[1]][inside]).mean()
    assert agreement > 0.97 and whole.scene.attrs["crs"] != ""
    far = _reprojected(shared_data / LABEL, tmp_path / "far.tif", "EPSG:32630", shift=500_000)
    with pytest.raises(InputError, match=r"far.tif: does not overlap .*S2Hand.tif"):
        mask_chips(shared_data / S2, far, table)
