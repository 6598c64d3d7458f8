"""`rsneo learn` (rsneo.cli.learn): the command reports the hold-out score per class and how to use the
folder it wrote; an output it cannot write is refused before the model loads.

What `learn` trains and writes is specified in tests/train/test_learn.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from rsneo.cli import run_app
from rsneo.cli.documents import LearnDocument

S2 = "sen1floods11/S2/Spain_7370579_S2Hand.tif"


@pytest.fixture(scope="module")
def points(water_label_points) -> Path:
    """8 points per class from the hand-labelled water mask, as a GeoJSON in the raster's CRS."""
    return water_label_points(8, seed=1, name="points.geojson")


def argv(shared_data, points: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return [
        "learn", str(shared_data / S2), "--labels", str(points), "--class-field", "cover", "--out", str(out),
        "--model", str(model), "--steps", "2", *extra,
    ]  # fmt: skip


def test_learn_reports_scores_per_class_and_how_to_use_the_folder(
    shared_data, points, tiny_model_dir, tmp_path, capsys
):
    out = tmp_path / "model"
    assert run_app(argv(shared_data, points, out, tiny_model_dir, "--folds", "4")) == 0
    printed = capsys.readouterr().out
    lines = " ".join(printed.split())
    assert "spatial 4-fold" in lines
    for name in ("Flood water", "dry ground"):
        row = re.search(rf"{name}\W+(\S+)\W+(\S+)\W+(\d+)\W+(\d+)\W+(\d+)", printed)
        assert row, printed
        iou, f1 = (float(v) for v in row.groups()[:2])
        assert 0.0 <= iou <= f1 <= 1.0  # F1 >= IoU for any prediction
        assert int(row.group(4)) == 8  # k-fold: every feature of the class is scored once
        assert int(row.group(5)) >= 5  # by heads trained on at least 5 of its 8 features
    assert re.search(r"mean IoU \d\.\d{3}, mean F1 \d\.\d{3}", lines)
    assert f"model folder: {out}" in lines
    assert f'use it: rsneo segment RASTER --model {out} --classes "Flood water, dry ground"' in lines


def test_json_document_names_the_folder_and_the_scores(shared_data, points, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "model"
    assert run_app(argv(shared_data, points, out, tiny_model_dir, "--folds", "2", "--json")) == 0
    printed = capsys.readouterr().out
    doc = LearnDocument.model_validate_json(printed)  # stdout is the document alone
    assert doc.ok and doc.model == str(out) and doc.record == str(out / "learn.json")
    assert doc.classes == ["Flood water", "dry ground"] and set(doc.scores) == set(doc.classes)
    assert all(s.features == 8 and 0.0 <= s.iou <= s.f1 <= 1.0 for s in doc.scores.values())
    record = json.loads((out / "learn.json").read_text())["holdout"]
    assert doc.mean_iou == pytest.approx(record["mean_iou"], abs=1e-12)


def test_without_folds_it_warns_there_is_no_score(shared_data, points, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "model"
    assert run_app(argv(shared_data, points, out, tiny_model_dir, "--folds", "0")) == 0
    captured = capsys.readouterr()
    assert "mean IoU" not in captured.out
    assert "--folds 0: the learnt classes are not scored" in " ".join(captured.err.split())


def test_an_output_that_is_a_file_is_refused_before_any_work(shared_data, points, tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("x")
    missing_model = tmp_path / "never_loaded"  # the folder check comes first: this is never opened
    assert run_app(argv(shared_data, points, target, missing_model)) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "afile: expected a folder to write into, found a file" in err
    assert target.read_text() == "x"


def test_a_thin_class_is_warned_about_and_invalid_polygons_are_repaired_and_counted(
    shared_data, points, tiny_model_dir, tmp_path, capsys
):
    """The issue's collapse, small: a class with 2 features can only be scored by a head trained on 1, and
    says so; a self-intersecting polygon is repaired (make_valid) and counted, not taken silently."""
    import geopandas as gpd
    from shapely.geometry import Polygon

    frame = gpd.read_file(points)
    water = frame[frame.cover == "Flood water"].iloc[:2]
    land = frame[frame.cover == "dry ground"]
    x, y = land.geometry.iloc[0].centroid.coords[0]
    d = 3e-4 if frame.crs.is_geographic else 30.0  # about 3 pixels: a bow-tie drawn around one land point
    bowtie = Polygon([(x - d, y - d), (x + d, y + d), (x + d, y - d), (x - d, y + d)])
    extra = gpd.GeoDataFrame({"cover": ["dry ground"]}, geometry=[bowtie], crs=frame.crs)
    labels = tmp_path / "thin.gpkg"
    gpd.GeoDataFrame(pd.concat([water, land, extra], ignore_index=True), crs=frame.crs).to_file(labels)
    out = tmp_path / "model"
    assert run_app(argv(shared_data, labels, out, tiny_model_dir)) == 0
    err = " ".join(capsys.readouterr().err.split())
    repaired = "thin.gpkg: 1 invalid geometry (self-intersecting or badly ringed) repaired with shapely"
    assert repaired in err
    thin = 'class "Flood water": 2 held-out features scored by heads trained on as few as 1 of its features'
    assert thin in err
    assert "fewer than 3 on one side): its score is unreliable" in err and 'class "dry ground"' not in err
