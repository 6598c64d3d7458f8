"""`rsneo.demo` end to end on the bundled samples, through the command: every product exists, is valid and
is where it says."""

from __future__ import annotations

import html
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from PIL import Image
from rio_cogeo.cogeo import cog_validate

from rsneo.cli import run_app
from rsneo.demo import DEMO_CLASSES, DEMO_QUESTION, bundled_samples, run_demo
from rsneo.predict.requests import SegmentRequest


def flat(text: str) -> str:
    """Text without whitespace: rich wraps long error lines wherever the terminal width says."""
    return "".join(text.split())


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> Path:
    """One run of the real command (the bundled model, or the random stand-in when none is bundled)."""
    out = tmp_path_factory.mktemp("demo") / "out"
    assert run_app(["demo", "--out", str(out)]) == 0
    return out


def test_segmentation_is_a_valid_cog_on_the_scene_grid_with_the_typed_classes(demo_out):
    cog = demo_out / "segmentation" / "Spain_7370579_S2Hand_classes.tif"
    assert cog_validate(str(cog))[0]
    with rasterio.open(cog) as out, rasterio.open(bundled_samples().sentinel2) as scene:
        assert (out.crs, out.transform, out.shape) == (scene.crs, scene.transform, scene.shape)
        classes = out.read(1)
    assert set(np.unique(classes)) <= set(range(len(DEMO_CLASSES) + 1))  # + "none of these"


def test_segmentation_polygons_and_qgis_project_reference_the_outputs(demo_out):
    polygons = gpd.read_file(demo_out / "segmentation" / "Spain_7370579_S2Hand_classes.gpkg")
    assert len(polygons) > 0 and set(polygons["class_name"]) <= {*DEMO_CLASSES, "none of these"}
    assert polygons.crs.to_epsg() == 4326
    with zipfile.ZipFile(demo_out / "segmentation" / "Spain_7370579_S2Hand.qgz") as project:
        qgs = next(project.read(n).decode() for n in project.namelist() if n.endswith(".qgs"))
    assert "Spain_7370579_S2Hand_classes.tif" in qgs and "Spain_7370579_S2Hand_classes.gpkg" in qgs


def test_change_map_covers_the_landsat_pair_and_has_a_report(demo_out):
    with rasterio.open(demo_out / "change" / "change.tif") as cog:
        assert (cog.crs.to_epsg(), cog.shape, cog.transform.a) == (32651, (400, 400), 30.0)
        assert set(np.unique(cog.read(1))) <= {0, 1, 255}
    report = html.unescape((demo_out / "change" / "change_report.html").read_text())
    assert "2000TM" in report and "2003TM" in report and "<img" in report
    # Taizhou is Landsat-7 ETM+, a sensor the bundled change head never saw: the report says so
    assert "Outside the model's training data" in report and "landsat7_etm imagery at 30 m" in report


def test_answer_and_overview_picture_are_written(demo_out):
    answer = (demo_out / "answer.txt").read_text()
    assert answer.startswith(f"Q: {DEMO_QUESTION}\nA: ")
    with Image.open(demo_out / "overview.png") as picture:
        assert picture.format == "PNG" and picture.size[0] > 800 and picture.size[1] > 600
    assert not list(demo_out.rglob(".*partial*"))  # nothing half-written is left behind


def test_missing_samples_are_a_clear_error(tmp_path):
    from rsneo.errors import InputError

    with pytest.raises(InputError, match="bundled samples: expected .*Spain_7370579_S2Hand.tif"):
        bundled_samples(tmp_path)
    with pytest.raises(InputError, match="--window"):
        run_demo(tmp_path, window=48)


def test_bundled_model_beats_the_mndwi_baseline_on_held_out_water(tmp_path):
    """The shipped weights load with today's code and map water better than MNDWI where never trained."""
    from rsneo import baselines
    from rsneo.heads.system import BUNDLED_MODEL, load_system
    from rsneo.predict.segment import segment_raster

    samples = bundled_samples()
    outputs = segment_raster(
        load_system(BUNDLED_MODEL),
        SegmentRequest(raster=samples.sentinel2, classes=["water", "land"], out=tmp_path),
    )
    with rasterio.open(outputs.cog) as cog, rasterio.open(samples.water_label) as lab:
        water_map, label = cog.read(1)[:, 256:], lab.read(1)[:, 256:]  # the right half is held out
    with rasterio.open(samples.sentinel2) as src:
        green, swir = src.read(3)[:, 256:], src.read(12)[:, 256:]
    valid, water = label != -1, label == 1
    model_iou = baselines.iou(water_map == 0, water, valid)
    mndwi_iou = baselines.iou(baselines.mndwi(green, swir) > 0, water, valid)
    assert mndwi_iou == pytest.approx(0.651, abs=1e-3)
    assert model_iou > 0.75 > mndwi_iou
