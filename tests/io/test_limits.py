"""`rsneo.io.limits`: the checks made before any work starts, each refusal naming the file, what it found and
what it expected."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import rasterio

from rsneo.errors import InputError
from rsneo.io.limits import (
    MAX_PIXELS,
    byte_size,
    check_disk,
    check_has_valid_pixels,
    check_size,
    max_pixels,
)
from rsneo.io.read import open_source

S2HAND = "sen1floods11/S2/Spain_7370579_S2Hand.tif"  # 512 x 512 pixels, 13 bands
S1HAND = "sen1floods11/S1/Spain_7370579_S1Hand.tif"  # 512 x 512 pixels, VV and VH, float32, nodata NaN


def test_pixel_cap_defaults_to_2_to_the_33_and_follows_the_environment(monkeypatch):
    monkeypatch.delenv("RSNEO_MAX_PIXELS", raising=False)
    assert max_pixels() == MAX_PIXELS == 8_589_934_592
    monkeypatch.setenv("RSNEO_MAX_PIXELS", "1e6")  # scientific notation, as people write large numbers
    assert max_pixels() == 1_000_000


def test_size_check_refuses_one_pixel_over_the_cap_and_names_the_file(shared_data, monkeypatch):
    source = open_source(shared_data / S2HAND)
    monkeypatch.setenv("RSNEO_MAX_PIXELS", str(512 * 512))
    check_size(source)  # exactly at the cap: accepted
    monkeypatch.setenv("RSNEO_MAX_PIXELS", str(512 * 512 - 1))
    with pytest.raises(InputError) as refused:
        check_size(source)
    message = str(refused.value)
    assert message.startswith(f"{shared_data / S2HAND}: 512 x 512 pixels (2.62e+05) is more than rsneo")
    assert "RSNEO_MAX_PIXELS" in message and "crop it first (gdal_translate -srcwin)" in message


def test_outputs_that_cannot_fit_on_the_disk_are_refused(shared_data, tmp_path):
    source = open_source(shared_data / S2HAND)
    check_disk(source, tmp_path / "out", 4.0)  # 512 x 512 pixels: a megabyte
    with pytest.raises(InputError, match=r"S2Hand.tif: its outputs need about .* GB in .*out, but .* free"):
        check_disk(source, tmp_path / "out", 1e12)
    assert not (tmp_path / "out").exists()  # the probe looks at the nearest existing parent, creates nothing


def _s1_like(shared_data, path, data: np.ndarray, nodata: float | None = 0.0) -> None:
    with rasterio.open(shared_data / S1HAND) as src:
        profile = src.profile | {"height": data.shape[1], "width": data.shape[2], "nodata": nodata}
    profile |= {"tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = ("VV", "VH")


def test_a_raster_of_nodata_only_is_refused_with_its_nodata_value(shared_data, tmp_path):
    path = tmp_path / "blank.tif"
    _s1_like(shared_data, path, np.zeros((2, 64, 64), np.float32))
    with pytest.raises(
        InputError, match=r"blank.tif: every pixel is nodata \(nodata value 0\); expected some"
    ):
        check_has_valid_pixels(open_source(path))


def test_a_small_valid_patch_in_a_large_raster_is_found(shared_data, tmp_path):
    """2048 pixels a side: the decimated mask read (1 pixel in 4) can miss a 2 x 2 patch; the block reads
    that follow must not."""
    data = np.zeros((2, 2048, 2048), np.float32)
    data[:, 1001:1003, 1001:1003] = -12.5
    path = tmp_path / "patch.tif"
    _s1_like(shared_data, path, data)
    check_has_valid_pixels(open_source(path))
    data[:] = 0
    _s1_like(shared_data, tmp_path / "blank.tif", data)
    with pytest.raises(InputError, match="every pixel is nodata"):
        check_has_valid_pixels(open_source(tmp_path / "blank.tif"))


def test_a_real_sample_has_valid_pixels(shared_data):
    check_has_valid_pixels(open_source(shared_data / S1HAND))


def test_disk_figures_under_a_gigabyte_are_in_megabytes(shared_data, tmp_path, monkeypatch):
    source = open_source(shared_data / S2HAND)
    monkeypatch.setattr(
        shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**9, 10**9 - 3 * 10**5, 3 * 10**5)
    )
    with pytest.raises(InputError, match=r"need about 1\.0 MB in .*, but .* has 0\.3 MB free"):
        check_disk(source, tmp_path, 4.0)  # 512 x 512 x 4 bytes = 1.05 MB
    assert byte_size(2.5e9) == "2.5 GB" and byte_size(999e6) == "999.0 MB"


@pytest.mark.parametrize("fill", [np.nan, np.inf])
def test_a_float_raster_of_nan_or_inf_without_a_nodata_tag_is_refused(shared_data, tmp_path, fill):
    """GDAL's mask says every pixel of an untagged float raster is valid; its values say none is."""
    path = tmp_path / "nan.tif"
    _s1_like(shared_data, path, np.full((2, 64, 64), fill, np.float32), nodata=None)
    with pytest.raises(InputError, match=r"nan.tif: every pixel is nodata or NaN/infinite; expected some"):
        check_has_valid_pixels(open_source(path))
    data = np.full((2, 64, 64), fill, np.float32)
    data[1, 5, 7] = -3.0  # one band of one pixel holds a value, the other is still NaN: still no valid pixel
    _s1_like(shared_data, path, data, nodata=None)
    with pytest.raises(InputError, match="every pixel is nodata or NaN/infinite"):
        check_has_valid_pixels(open_source(path))
    data[0, 5, 7] = -9.0
    _s1_like(shared_data, path, data, nodata=None)
    check_has_valid_pixels(open_source(path))
