"""The cached opener under every reader: one handle per file and process, a bounded cache, named errors."""

from __future__ import annotations

import pytest

from rsneo.errors import InputError
from rsneo.io import dataset
from rsneo.io.dataset import close_datasets, dataset_grid, open_dataset

S2HAND = "sen1floods11/S2/Spain_7370579_S2Hand.tif"
LABEL = "sen1floods11/Labels/Spain_7370579_LabelHand.tif"


def test_a_file_is_opened_once_and_closed_on_request(shared_data):
    close_datasets()
    first = open_dataset(str(shared_data / S2HAND))
    assert open_dataset(str(shared_data / S2HAND)) is first  # the header is read once
    close_datasets()
    assert first.closed
    again = open_dataset(str(shared_data / S2HAND))
    assert again is not first and not again.closed
    close_datasets()


def test_the_least_recently_used_handle_is_closed_first(shared_data, monkeypatch):
    close_datasets()
    monkeypatch.setattr(dataset, "MAX_OPEN", 2)
    s2 = open_dataset(str(shared_data / S2HAND))
    label = open_dataset(str(shared_data / LABEL))
    assert open_dataset(str(shared_data / S2HAND)) is s2  # now the most recently used
    s1 = open_dataset(str(shared_data / "sen1floods11/S1/Spain_7370579_S1Hand.tif"))
    assert label.closed and not s2.closed and not s1.closed
    close_datasets()


def test_missing_and_corrupt_files_are_input_errors_naming_the_file(tmp_path):
    with pytest.raises(InputError, match=r"nothing\.tif: file not found"):
        open_dataset(str(tmp_path / "nothing.tif"))
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 not a tiff")
    with pytest.raises(InputError, match=r"broken\.tif: cannot open it as a raster"):
        open_dataset(str(broken))


def test_grid_of_a_georeferenced_file(shared_data):
    src = open_dataset(str(shared_data / S2HAND))
    grid = dataset_grid(src)
    assert grid.crs == src.crs and (grid.width, grid.height) == (src.width, src.height)
    assert grid.transform == src.transform
    close_datasets()


def test_a_photo_without_georeference_has_a_pixel_unit_grid(shared_data):
    grid = dataset_grid(open_dataset(str(shared_data / "levir_cd/A/test_2_0000_0000.png")))
    assert grid.crs is None and grid.transform.is_identity
    close_datasets()


def test_a_file_rewritten_in_place_is_opened_again_not_served_stale(shared_data, tmp_path):
    """A notebook or a long-lived process that rewrites a raster must read the new pixels and header."""
    import numpy as np
    import rasterio

    path = tmp_path / "rewritten.tif"
    with rasterio.open(shared_data / LABEL) as src:
        profile = src.profile | {"width": 32, "height": 32, "nodata": None}
    for value, width in ((1, 32), (2, 48)):
        with rasterio.open(path, "w", **(profile | {"width": width})) as dst:
            dst.write(np.full((1, 32, width), value, profile["dtype"]))
        src = open_dataset(str(path))
        assert src.width == width and int(src.read(1)[0, 0]) == value
    assert dataset_grid(open_dataset(str(path))).width == 48
    close_datasets()
