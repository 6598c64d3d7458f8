"""What the product commands take as inputs (rsneo.cli.inputs): files, folders of scenes, band folders, globs,
ItemCollections and URLs, each with a unique name."""

from __future__ import annotations

import json
import shutil

import pytest

from rsneo.cli.inputs import Item, expand_inputs, is_band_folder, localise_item, unique_names
from rsneo.errors import InputError

S2 = ("sen1floods11", "S2", "Spain_7370579_S2Hand.tif")
BEN = ("bigearthnet", "BigEarthNet-S2-Example")


def test_files_folders_globs_and_urls_become_items(shared_data, tmp_path):
    for name in ("a.tif", "b.tif"):
        shutil.copy(shared_data.joinpath(*S2), tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a raster")
    url = "https://example.com/data/scene%201.tif"
    items = expand_inputs([str(tmp_path), str(tmp_path / "*.tif"), url])
    assert [i.name for i in items] == ["a", "b", "a_2", "b_2", "scene_1"]
    assert items[-1].source == url  # the URL as typed, never through Path
    with pytest.raises(InputError, match="no raster or STAC item matches this pattern"):
        expand_inputs([str(tmp_path / "*.jp2")])


def test_a_folder_of_one_band_files_is_one_acquisition(shared_data):
    patch = next(p for p in sorted(shared_data.joinpath(*BEN).iterdir()) if p.is_dir())
    assert is_band_folder(patch)
    assert expand_inputs([str(patch)]) == [Item(patch.name, str(patch))]
    assert not is_band_folder(shared_data / "sen1floods11" / "S2")  # multi-band scenes


def test_an_item_collection_gives_its_items_with_local_hrefs(tmp_path):
    features = [
        {"type": "Feature", "id": f"S2_{i}", "assets": {"B04": {"href": f"b{i}.tif"}}} for i in (1, 2)
    ]
    collection = tmp_path / "items.json"
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    items = expand_inputs([str(collection)])
    assert [(i.name, i.source) for i in items] == [
        ("S2_1", f"{collection}#S2_1"),
        ("S2_2", f"{collection}#S2_2"),
    ]
    local = localise_item(items[0].stac, items[0].base, tmp_path / "out")
    written = json.loads(local.read_text())
    assert local == tmp_path / "out" / "S2_1.json"
    assert written["assets"]["B04"]["href"] == str((tmp_path / "b1.tif").resolve())
    stamp = local.stat().st_mtime_ns
    assert localise_item(items[0].stac, items[0].base, tmp_path / "out").stat().st_mtime_ns == stamp


def test_names_are_made_unique_and_safe():
    items = unique_names([Item("a b", "x"), Item("a_b", "y"), Item("A_B", "z")])
    assert [i.name for i in items] == ["a_b", "a_b_2", "A_B_3"]


def test_an_empty_collection_is_refused(tmp_path):
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    with pytest.raises(InputError, match="a STAC ItemCollection with no items"):
        expand_inputs([str(path)])
