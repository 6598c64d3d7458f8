"""`rsneo.predict.segment`: a real raster segmented end to end by a tiny model: a class map on the raster's
grid, nodata where the raster has none, areas that add up to the raster's valid area; bad classes refused."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from rsneo.errors import InputError
from rsneo.heads.segmentation import NONE_OF_THESE
from rsneo.io.cog import NODATA_CLASS
from rsneo.predict.requests import SegmentRequest
from rsneo.predict.segment import segment_raster
from rsneo.predict.sliding_window import WindowPlan

RGB = "rasters/RGB.byte.tif"  # Landsat RGB, UTM 18N, 300 m pixels, a nodata collar


@pytest.fixture(scope="module")
def crop(shared_data, tmp_path_factory):
    """192 x 256 pixels of the scene's left edge: a quarter of them nodata."""
    path = tmp_path_factory.mktemp("segment_in") / "RGB.crop.tif"
    with rasterio.open(shared_data / RGB) as src:
        window = Window(0, 300, 256, 192)
        profile = src.profile | {"width": 256, "height": 192, "transform": src.window_transform(window)}
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(src.read(window=window))
    return path


@pytest.fixture(scope="module")
def segmented(tiny_system, crop, tmp_path_factory):
    out = tmp_path_factory.mktemp("segment_out")
    return segment_raster(
        tiny_system,
        SegmentRequest(raster=crop, classes=["water", "land"], out=out, plan=WindowPlan(128, 32, 4)),
    )


def test_class_map_is_on_the_raster_grid_with_nodata_where_the_raster_has_none(segmented, crop):
    with rasterio.open(crop) as src, rasterio.open(segmented.cog) as out:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
        valid = src.dataset_mask() > 0
        classes = out.read(1)
    assert 0.6 < valid.mean() < 0.9  # the crop really holds both
    assert (classes[~valid] == NODATA_CLASS).all()
    assert set(np.unique(classes[valid])) <= {0, 1, 2}  # water, land, none of these


def test_class_areas_add_up_to_the_valid_area_of_the_raster(segmented, crop):
    with rasterio.open(crop) as src:
        valid_pixels = int((src.dataset_mask() > 0).sum())
        pixel_ha = abs(src.transform.a * src.transform.e) / 1e4
    assert segmented.area_unit == "ha" and list(segmented.areas) == ["water", "land", NONE_OF_THESE]
    # true areas on the ellipsoid: UTM's scale factor near this zone's edge is within half a percent of 1
    assert sum(segmented.areas.values()) == pytest.approx(valid_pixels * pixel_ha, rel=5e-3)
    with rasterio.open(segmented.cog) as out:
        counts = np.bincount(out.read(1).ravel(), minlength=256)
    for index, name in enumerate(segmented.areas):  # each class's area follows its own pixel count
        assert segmented.areas[name] == pytest.approx(counts[index] * pixel_ha, rel=5e-3, abs=1e-9)


def test_every_product_is_written_and_nothing_temporary_is_left(segmented):
    for path in (segmented.cog, segmented.gpkg, segmented.qml, segmented.qgz, segmented.confidence):
        assert path.is_file() and path.stat().st_size > 0
    assert not [p.name for p in segmented.cog.parent.iterdir() if p.name.startswith(".")]


def test_the_minimum_mapping_unit_applies_to_the_class_map_and_its_polygons_alike(
    segmented, tiny_system, crop, tmp_path
):
    """By default no polygon is a single pixel, and the COG the GIS user opens is the sieved map: its class
    totals are the polygons' (and the product's). `--min-area 0` keeps every pixel; a sieve in hectares on
    a raster with a CRS merges more."""
    import geopandas as gpd

    from rsneo.io.vector import class_areas

    polygons = gpd.read_file(segmented.gpkg, layer="classes")
    assert polygons.pixels.min() >= 2
    from_cog = class_areas(segmented.cog)
    for name, area in segmented.areas.items():
        assert polygons[polygons.class_name == name].area_ha.sum() == pytest.approx(area, rel=1e-9, abs=1e-9)
        assert from_cog[name] == pytest.approx(area, rel=1e-9, abs=1e-9)
    assert segmented.sieve.startswith("minimum mapping unit 2 px:")

    def run(name: str, min_area) -> object:
        request = SegmentRequest(raster=crop, classes=["water", "land"], out=tmp_path / name,
                                 plan=WindowPlan(128, 32, 4), min_area=min_area)  # fmt: skip
        return segment_raster(tiny_system, request)

    raw = run("raw", 0)
    singles = gpd.read_file(raw.gpkg, layer="classes").pixels.eq(1).sum()
    merged = int(segmented.sieve.split(": ")[1].split(" of ")[0].replace(",", ""))
    assert raw.sieve == "" and singles > 0 and merged >= singles  # every single pixel was merged
    with rasterio.open(raw.cog) as a, rasterio.open(segmented.cog) as b:
        changed = int((a.read(1) != b.read(1)).sum())
    assert f"({changed:,} pixels)" in segmented.sieve
    assert sum(raw.areas.values()) == pytest.approx(sum(segmented.areas.values()), rel=1e-9)  # same ground
    coarse = run("ha", "200")  # hectares: 22 pixels of 300 m
    assert gpd.read_file(coarse.gpkg, layer="classes").area_ha.min() >= 200 * (1 - 5e-3)


@pytest.mark.parametrize(
    ("text", "message"),
    [(" , ,", "expected a comma-separated list of class names"), ("Water,water", "class names must differ")],
)
def test_empty_or_repeated_class_lists_are_refused(text, message, tiny_system, crop, tmp_path):
    with pytest.raises(InputError, match=f"--classes: {message}"):
        segment_raster(tiny_system, SegmentRequest(raster=crop, classes=text, out=tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# ---- input outside the imagery the head was trained on (rsneo.heads.domain) --------------------------------

LEVIR_AFTER = "levir_cd/B/test_7_0256_0512.png"


@pytest.fixture(scope="module")
def bundled():
    from rsneo.heads.system import load_system

    return load_system()


@pytest.fixture(scope="module")
def s2_corner(shared_data, tmp_path_factory):
    """128 x 128 pixels of the Sen1Floods11 Sentinel-2 chip, band names kept: the imagery the bundled
    segmentation head was trained on."""
    path = tmp_path_factory.mktemp("s2") / "s2.tif"
    with rasterio.open(shared_data / "sen1floods11/S2/Spain_7370579_S2Hand.tif") as src:
        window = Window(256, 128, 128, 128)
        size = {"width": 128, "height": 128, "transform": src.window_transform(window)}
        with rasterio.open(path, "w", **(src.profile | size | {"photometric": "MINISBLACK"})) as dst:
            dst.write(src.read(window=window))
            dst.descriptions = src.descriptions
    return path


def test_an_rgb_photo_is_warned_about_and_noted_in_the_outputs(bundled, shared_data, tmp_path):
    import zipfile

    from rsneo.errors import OutsideTrainingWarning
    from rsneo.io.cog import read_legend
    from rsneo.io.read import PixelUnitsWarning

    photo = shared_data / LEVIR_AFTER
    with pytest.warns(PixelUnitsWarning), pytest.warns(OutsideTrainingWarning) as caught:
        result = segment_raster(
            bundled, SegmentRequest(raster=photo, classes=["water", "land"], out=tmp_path)
        )
    expected = (
        f"{photo}: rgb imagery at an unknown pixel size; the segmentation head was trained on sentinel2_l1c "
        "at 10 m only: its map here is unverified"
    )
    assert [str(w.message) for w in caught if w.category is OutsideTrainingWarning] == [expected]
    assert result.notes == (expected,)
    assert read_legend(result.cog).notes == (expected,)  # kept in the class map's metadata
    with zipfile.ZipFile(result.qgz) as project:
        qgs = project.read(next(n for n in project.namelist() if n.endswith(".qgs"))).decode()
    assert "unverified: outside the model's training data" in qgs


def test_strict_refuses_an_rgb_photo_and_writes_nothing(bundled, shared_data, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match="--strict refuses input outside the model's training data"):
        segment_raster(
            bundled,
            SegmentRequest(raster=shared_data / LEVIR_AFTER, classes=["water", "land"], out=out, strict=True),
        )
    assert not out.exists()


def test_the_training_imagery_is_not_warned_about(bundled, s2_corner, tmp_path):
    import warnings

    from rsneo.errors import OutsideTrainingWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", OutsideTrainingWarning)
        result = segment_raster(
            bundled, SegmentRequest(raster=s2_corner, classes=["water", "land"], out=tmp_path, strict=True)
        )
    assert result.notes == ()
    assert result.areas["water"] > 0
