"""Remote rasters (rsneo.io.remote): a COG served over HTTP on 127.0.0.1 is read window by window through
GDAL range requests (counted bytes prove it); bad URLs, 404s and timeouts are one InputError with the URL
intact."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import rasterio
import rasterio.shutil

from rsneo.errors import InputError
from rsneo.io.remote import describe_remote, gdal_path, is_remote, local_input, remote_name, remote_source
from rsneo.io.scene import read_scene

S2 = ("sen1floods11", "S2", "Spain_7370579_S2Hand.tif")


@pytest.fixture
def served_cog(loopback, shared_data):
    """The Sen1Floods11 S2 chip as a tiled, compressed COG on the loopback server."""
    cog = loopback.root / "scene.tif"
    with rasterio.open(shared_data.joinpath(*S2)) as src:
        rasterio.shutil.copy(src, cog, driver="COG", blocksize=128, compress="deflate", overviews="none")
    return loopback, cog


@pytest.mark.parametrize(
    ("text", "remote", "gdal"),
    [
        ("https://example.com/a/scene.tif", True, "/vsicurl/https://example.com/a/scene.tif"),
        ("/vsicurl/https://example.com/scene.tif", True, "/vsicurl/https://example.com/scene.tif"),
        ("s3://bucket/key/scene.tif", True, "/vsis3/bucket/key/scene.tif"),
        ("/vsis3/bucket/scene.tif", True, "/vsis3/bucket/scene.tif"),
        ("data/scene.tif", False, None),
    ],
)
def test_remote_paths_are_recognised_and_given_to_gdal_unmangled(text, remote, gdal):
    assert is_remote(text) is remote
    if remote:
        assert gdal_path(text) == gdal
        assert remote_name(text) == "scene.tif"


def test_a_window_of_a_remote_cog_streams_only_its_blocks(served_cog, shared_data, tmp_path):
    server, cog = served_cog
    url = f"{server.url}/scene.tif"
    vrt = local_input(url, tmp_path)
    assert vrt == tmp_path / "scene.vrt" and remote_source(vrt) == url
    window = (192, 192, 64, 64)  # col, row, width, height: under one 128-pixel block of each band
    remote = read_scene([vrt], window=window)
    local = read_scene([shared_data.joinpath(*S2)], window=window)
    assert remote.attrs["sensor"] == local.attrs["sensor"] == "sentinel2_l1c"
    assert remote.attrs["crs"] == local.attrs["crs"] and remote.attrs["transform"] == local.attrs["transform"]
    # int16 reflectances in float32 (exact in float32): the same numbers, NaN where nodata
    np.testing.assert_array_equal(remote.values, local.values)
    size = cog.stat().st_size
    assert 0 < server.bytes_sent("scene.tif") < 0.25 * size, (server.bytes_sent("scene.tif"), size)
    assert any("bytes=" in r for r in server.requests)  # range requests, not the whole file


def test_the_vrt_is_kept_while_the_remote_is_unchanged_and_redone_when_it_changes(served_cog, tmp_path):
    server, cog = served_cog
    url = f"{server.url}/scene.tif"
    vrt = describe_remote(url, tmp_path / "scene.vrt")
    stamp, text = vrt.stat().st_mtime_ns, vrt.read_text()
    assert describe_remote(url, vrt) == vrt and vrt.stat().st_mtime_ns == stamp  # same resume signature
    later = time.time() + 10
    os.utime(cog, (later, later))  # the server now says it was modified later
    describe_remote(url, vrt)
    assert vrt.read_text() != text


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("missing.tif", "not found on the server (HTTP 404)"),
        ("slow/scene.tif", "no answer within 1 s (timeout)"),
    ],
)
def test_404_and_timeout_are_input_errors_naming_the_url(served_cog, tmp_path, monkeypatch, path, expected):
    server, _ = served_cog
    server.delay = 3
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "1")
    url = f"{server.url}/{path}"
    with pytest.raises(InputError) as caught:
        local_input(url, tmp_path / "out")
    assert str(caught.value) == f"{url}: {expected}"
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_malformed_url_and_a_closed_port_are_refused_with_the_url(tmp_path):
    with pytest.raises(InputError, match=r"^https://: expected a URL of a raster file"):
        local_input("https://", tmp_path)
    with pytest.raises(InputError, match=r"^http://127\.0\.0\.1:9/scene\.tif: cannot reach the server"):
        local_input("http://127.0.0.1:9/scene.tif", tmp_path)


def test_local_paths_are_left_as_they_are(tmp_path):
    assert local_input(str(tmp_path / "scene.tif"), tmp_path / "out") == tmp_path / "scene.tif"
    assert not (tmp_path / "out").exists()
