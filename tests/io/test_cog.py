"""COG writer: a valid COG (rio-cogeo) with the input's CRS and transform, class names, colours, overviews."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate

from rsneo.errors import InputError
from rsneo.io.cog import NODATA_CLASS, ClassLegend, CogBlockWriter, check_writable, read_legend


@pytest.fixture(scope="module")
def rgb(shared_data):
    return shared_data / "rasters" / "RGB.byte.tif"


def write_blocks(path, src, legend, rows=200):
    """Classes = red band mod 3 (nodata where the input is), written in strips of `rows`."""
    writer = CogBlockWriter(
        path, width=src.width, height=src.height, crs=src.crs, transform=src.transform, legend=legend
    )
    red = src.read(1)
    classes = (red % 3).astype(np.uint8)
    classes[src.dataset_mask() == 0] = NODATA_CLASS
    for top in range(0, src.height, rows):
        h = min(rows, src.height - top)
        window = Window(0, top, src.width, h)
        writer.write(window, classes[top : top + h])
        if top == 0:
            writer.flush()  # what the engine does after every strip
    return writer, classes


def test_cog_is_valid_and_keeps_georeference_classes_and_colours(rgb, tmp_path):
    legend = ClassLegend.from_names(["water", "forest", "built-up"])
    with rasterio.open(rgb) as src:
        writer, classes = write_blocks(tmp_path / "classes.tif", src, legend)
        assert not (tmp_path / "classes.tif").exists()  # nothing under the final name until finish
        path = writer.finish()
        crs, transform = src.crs, src.transform
    valid, errors, _ = cog_validate(str(path))
    assert valid, errors
    with rasterio.open(path) as out:
        assert out.crs == crs and out.transform == transform
        assert out.count == 1 and out.descriptions == ("class",)
        assert json.loads(out.tags(1)["class_names"]) == ["water", "forest", "built-up"]
        assert out.colormap(1)[0][:3] == legend.colors[0] == (30, 110, 220)  # water is blue
        assert out.colormap(1)[NODATA_CLASS][3] == 0
        assert out.nodata == NODATA_CLASS
        assert out.overviews(1)  # overviews exist
        np.testing.assert_array_equal(out.read(1), classes)
    assert read_legend(path) == legend
    assert [p.name for p in tmp_path.iterdir()] == ["classes.tif"]  # temporary files are gone


def test_abort_leaves_nothing(rgb, tmp_path):
    legend = ClassLegend.from_names(["a", "b", "c"])
    with rasterio.open(rgb) as src:
        writer, _ = write_blocks(tmp_path / "x.tif", src, legend)
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_plain_band_has_no_colour_table_and_averaged_overviews(rgb, tmp_path):
    with rasterio.open(rgb) as src:
        writer = CogBlockWriter(
            tmp_path / "conf.tif", width=src.width, height=src.height, crs=src.crs, transform=src.transform,
            legend=None, description="confidence_percent",
        )  # fmt: skip
        writer.write(Window(0, 0, src.width, src.height), np.full((src.height, src.width), 70, np.uint8))
    path = writer.finish()
    assert cog_validate(str(path))[0]
    with rasterio.open(path) as out:
        assert out.descriptions == ("confidence_percent",)
        assert out.colorinterp[0].name == "gray"
        assert (out.read(1) == 70).all()
        assert (out.read(1, out_shape=(out.height // 4, out.width // 4)) == 70).all()


def test_legend_rejects_empty_class_list():
    with pytest.raises(InputError, match="expected one or more non-empty class names"):
        ClassLegend.from_names([])
    with pytest.raises(InputError, match="non-empty"):
        ClassLegend.from_names(["water", " "])


def test_legend_colours_are_distinct_for_unknown_names():
    legend = ClassLegend.from_names(["alpha", "beta", "gamma", "delta", "forest"])
    assert len(set(legend.colors)) == 5
    assert legend.colors[4] == (25, 110, 40)


def test_untrained_names_are_labelled_and_survive_the_cog(rgb, tmp_path):
    legend = ClassLegend.from_names(["water", "quarry pit"], untrained=("quarry pit",))
    assert [legend.label(0), legend.label(1)] == ["water", "quarry pit (untrained)"]
    with rasterio.open(rgb) as src:
        writer, _ = write_blocks(tmp_path / "classes.tif", src, legend)
    assert read_legend(writer.finish()) == legend


def test_what_a_name_was_read_as_is_labelled_and_survives_the_cog(rgb, tmp_path):
    legend = ClassLegend.from_names(
        ["open water", "cropland", "quarry pit"],
        untrained=("cropland", "quarry pit"),
        read_as={"open water": "read as water", "cropland": "read as land, broader", "absent": "read as x"},
    )
    assert [legend.label(i) for i in range(3)] == [
        "open water (read as water)",
        "cropland (read as land, broader; untrained)",
        "quarry pit (untrained)",
    ]
    with rasterio.open(rgb) as src:
        writer, _ = write_blocks(tmp_path / "classes.tif", src, legend)
    cog = writer.finish()
    assert read_legend(cog) == legend
    with rasterio.open(cog) as src:  # what another GIS reads from the tags alone
        assert json.loads(src.tags(1)["class_labels"])[1] == "cropland (read as land, broader; untrained)"


def test_check_writable_names_the_folder(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(InputError, match=r"output folder .*a_file/out: expected a folder rsneo can write to"):
        check_writable(blocker / "out")


def test_gdal_block_cache_is_the_size_given_in_bytes(rgb, tmp_path):
    """GDAL_CACHEMAX reaches GDAL in bytes (a bare 64 was 64 bytes: cache off), during and after writes."""
    from rasterio._env import get_gdal_config  # returns GDALGetCacheMax64(): the effective size

    from rsneo.io.cog import GDAL_CACHE_BYTES, gdal_env

    assert GDAL_CACHE_BYTES >= 64 * 1024**2
    with gdal_env():
        assert get_gdal_config("GDAL_CACHEMAX") == GDAL_CACHE_BYTES
    with rasterio.open(rgb) as src:
        writer, _ = write_blocks(tmp_path / "c.tif", src, ClassLegend.from_names(["a", "b", "c"]))
        writer.finish()
    assert get_gdal_config("GDAL_CACHEMAX") >= 64 * 1024**2  # nothing left the cache switched off
