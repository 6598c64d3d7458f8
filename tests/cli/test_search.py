"""`rsneo search` against a static STAC API on 127.0.0.1, and its items streamed into `rsneo segment`: the
same class map as the local file, read with range requests; a bad STAC URL exits 2 with the URL intact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import rasterio.shutil

from rsneo.cli import run_app
from rsneo.cli.documents import SearchDocument, SegmentDocument

S2 = ("sen1floods11", "S2", "Spain_7370579_S2Hand.tif")
SMALL = ["--window", "64", "--overlap", "16", "--batch", "4"]
S2_BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]


@pytest.fixture
def stac_api(loopback, shared_data):
    """A 128-pixel crop of the Sentinel-2 chip as a COG on the loopback server, and two STAC items: one over
    it in 2019, one elsewhere in 2020."""
    with rasterio.open(shared_data.joinpath(*S2)) as src:
        window = rasterio.windows.Window(0, 0, 128, 128)
        profile = {**src.profile, "width": 128, "height": 128, "transform": src.window_transform(window)}
        local = loopback.root / "local.tif"
        with rasterio.open(local, "w", **profile) as dst:
            dst.write(src.read(window=window))
            dst.descriptions = src.descriptions
        bounds = list(rasterio.windows.bounds(window, src.transform))
    with rasterio.open(local) as src:
        rasterio.shutil.copy(src, loopback.root / "s2.tif", driver="COG", blocksize=64, overviews="none")

    def item(name: str, when: str, bbox: list[float]) -> dict:
        return {
            "type": "Feature", "stac_version": "1.0.0", "id": name, "collection": "s2-l1c",
            "bbox": bbox, "geometry": {"type": "Point", "coordinates": bbox[:2]},
            "properties": {"datetime": when, "platform": "sentinel-2a", "processing:level": "L1C"},
            "assets": {"visual": {"href": f"{loopback.url}/s2.tif", "roles": ["data"],
                                  "eo:bands": [{"name": b} for b in S2_BANDS]}},
            "links": [],
        }  # fmt: skip

    loopback.stac_items = [
        item("S2A_MSIL1C_20190923_T30TYK", "2019-09-23T11:00:00Z", bounds),
        item("S2A_MSIL1C_20200101_T31TCJ", "2020-01-01T11:00:00Z", [10.0, 40.0, 10.1, 40.1]),
    ]
    return loopback, local, bounds


def test_search_lists_the_matching_items_and_segment_streams_them(stac_api, tiny_model_dir, tmp_path, capsys):
    server, local, bounds = stac_api
    items = tmp_path / "items.json"
    bbox = ",".join(str(v) for v in bounds)
    argv = ["search", "--stac", f"{server.url}/stac", "--collection", "s2-l1c", "--bbox", bbox,
            "--datetime", "2019-01-01/2019-12-31", "--out", str(items), "--json"]  # fmt: skip
    assert run_app(argv) == 0
    document = SearchDocument.model_validate_json(capsys.readouterr().out)
    assert document.matched == 1 and document.items[0].id == "S2A_MSIL1C_20190923_T30TYK"
    assert document.collection_file == str(items)
    assert json.loads(items.read_text())["features"][0]["assets"]["visual"]["href"] == f"{server.url}/s2.tif"

    out = tmp_path / "streamed"
    argv = ["segment", str(items), "--classes", "water, land", "--out", str(out), "--json",
            "--model", str(tiny_model_dir), *SMALL]  # fmt: skip
    assert run_app(argv) == 0
    (item,) = SegmentDocument.model_validate_json(capsys.readouterr().out).items
    assert item.input == f"{items}#S2A_MSIL1C_20190923_T30TYK"
    assert any("bytes=" in r for r in server.requests)  # read with range requests
    reference = tmp_path / "local"
    argv = ["segment", str(local), "--classes", "water, land", "--out", str(reference),
            "--model", str(tiny_model_dir), *SMALL]  # fmt: skip
    assert run_app(argv) == 0
    capsys.readouterr()
    with rasterio.open(item.files.class_map) as a, rasterio.open(reference / "local_classes.tif") as b:
        assert a.transform == b.transform and a.crs == b.crs
        np.testing.assert_array_equal(a.read(1), b.read(1))  # class indices: exact


def test_segment_reads_an_https_style_url_with_the_url_intact(stac_api, tiny_model_dir, tmp_path, capsys):
    server, local, _ = stac_api
    url = f"{server.url}/s2.tif"
    out = tmp_path / "out"
    argv = ["segment", url, "--classes", "water", "--out", str(out), "--json", "--model",
            str(tiny_model_dir), *SMALL]  # fmt: skip
    assert run_app(argv) == 0
    (item,) = SegmentDocument.model_validate_json(capsys.readouterr().out).items
    assert item.input == url and item.files.remote_input == str(out / "s2.vrt")
    missing = f"{server.url}/nothing/scene.tif"
    assert run_app(["segment", missing, "--classes", "water", "--out", str(tmp_path / "o2")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: {missing}: not found on the server (HTTP 404)" in err  # `http://`, not `http:/`
    assert not (tmp_path / "o2").exists()


def test_search_download_fetches_the_assets(stac_api, tmp_path, capsys):
    server, local, bounds = stac_api
    folder = tmp_path / "dl"
    argv = ["search", "--stac", f"{server.url}/stac", "--datetime", "2019-09-23", "--download", str(folder)]
    assert run_app(argv) == 0
    capsys.readouterr()
    collection = json.loads((folder / "items.json").read_text())
    (item,) = collection["features"]
    path = folder / "S2A_MSIL1C_20190923_T30TYK" / "s2.tif"
    assert item["assets"]["visual"]["href"] == str(path.resolve())
    assert path.read_bytes() == (server.root / "s2.tif").read_bytes()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:9/stac", "http://127.0.0.1:9/stac: cannot reach the STAC API"),
        ("https://", "expected a URL of a raster file"),
    ],
)
def test_a_bad_stac_url_exits_2_naming_it(url, expected, capsys):
    assert run_app(["search", "--stac", url]) == 2
    assert expected in " ".join(capsys.readouterr().err.split())
