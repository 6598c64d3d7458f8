"""The cached opener under every reader: one handle per file and process, a bounded cache, named errors."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from rsneo.errors import InputError
from rsneo.io import dataset
from rsneo.io.dataset import MASK_BAND, band_validity, close_datasets, dataset_grid, open_dataset
from rsneo.io.windows import RasterWindows

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


def _write(path, dtype: str, count: int = 3, **profile) -> None:
    """A small raster of zeros and ones (zeros in the top-left quarter)."""
    values = np.ones((count, 8, 8), dtype)
    values[:, :4, :4] = 0
    with rasterio.open(
        path, "w", driver="GTiff", width=8, height=8, count=count, dtype=dtype, **profile
    ) as dst:
        dst.write(values)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_band_validity_reads_gdal_mask_flags_once_for_headers_and_windows(tmp_path):
    _write(tmp_path / "nodata.tif", "uint16", nodata=0)
    _write(tmp_path / "plain.tif", "uint16")
    _write(tmp_path / "fraction.tif", "uint8", nodata=0.5)  # GDAL cuts it to 0
    _write(tmp_path / "rgba.tif", "uint8", count=4, photometric="RGB", alpha="YES")
    expected = {
        "nodata.tif": (0.0, 0.0, 0.0),
        "plain.tif": (None, None, None),
        "fraction.tif": (0.0, 0.0, 0.0),
        "rgba.tif": (MASK_BAND, MASK_BAND, MASK_BAND, None),  # the alpha band itself is data GDAL calls valid
    }
    for name, validity in expected.items():
        with rasterio.open(tmp_path / name) as src:
            assert band_validity(src) == validity, name
            windows = RasterWindows([src])
            _, valid = windows.read(0, 0, 8)
            assert np.array_equal(valid, src.dataset_mask() > 0), name  # what GDAL says is valid
        header = dataset.dataset_header(str(tmp_path / name))
        assert header.mask_band == tuple(isinstance(v, str) for v in validity), name
        assert header.nodata == tuple(None if isinstance(v, str) else v for v in validity), name
    close_datasets()
