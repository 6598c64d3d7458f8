"""`rsneo learn`: new classes from polygons/points on real imagery, scored on a spatial hold-out, and used by
`segment --model` under the learnt names."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from shapely.geometry import Point

from rsneo.cli import run_app
from rsneo.heads.fewshot import LEARN_RECORD, LEARNT_WEIGHTS, class_vectors, load_learnt
from rsneo.heads.system import load_system
from rsneo.io.labels import read_labels
from rsneo.train.learn_fit import pixel_logits
from rsneo.train.learn_pixels import labelled_windows, prepare_rasters, window_starts

S2 = ("sen1floods11", "S2", "Spain_7370579_S2Hand.tif")


def learn_args(shared_data, labels: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return [
        "learn", str(shared_data.joinpath(*S2)), "--labels", str(labels), "--class-field", "cover",
        "--out", str(out), "--model", str(model), "--steps", "5", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def learnt(tiny_model_dir, shared_data, flood_points, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("learn") / "model"
    assert run_app(learn_args(shared_data, flood_points, out, tiny_model_dir)) == 0
    return out


def test_learn_writes_a_model_folder_with_its_record(learnt, flood_points, shared_data, capsys):
    names = sorted(p.name for p in learnt.iterdir())
    for expected in ("config.json", "heads.json", "heads.safetensors", LEARNT_WEIGHTS, LEARN_RECORD):
        assert expected in names
    assert not [p for p in learnt.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    record = json.loads((learnt / LEARN_RECORD).read_text())
    assert record["learnt_classes"] == ["Flood water", "dry ground"]
    assert record["labels"] == str(flood_points.resolve()) and record["class_field"] == "cover"
    assert record["rasters"] == [str(shared_data.joinpath(*S2).resolve())]
    assert record["counts"]["dry ground"]["features"] == 12
    scores = record["holdout"]["scores"]
    for name in ("Flood water", "dry ground"):
        assert record["counts"][name]["held_out"] == 12  # k-fold: every feature scored once
        assert 0.0 <= scores[name]["iou"] <= scores[name]["f1"] <= 1.0  # F1 >= IoU always
        assert scores[name]["features"] == record["counts"][name]["held_out"]
        assert scores[name]["trained_on"] >= 3
    assert record["holdout"]["method"].startswith("spatial 4-fold") and record["holdout"]["warnings"] == []
    learnt_classes = load_learnt(learnt)
    assert learnt_classes.names == ["Flood water", "dry ground"]
    vocabulary = load_system(learnt).vocabulary  # segment/ask treat the learnt names as trained
    assert vocabulary.names == ("Flood water", "dry ground")
    assert vocabulary.classes[1].held_out["iou"] == pytest.approx(
        scores["dry ground"]["iou"], abs=1e-4
    )  # rounded


def test_segment_gives_the_learnt_classes_for_their_names(
    learnt, shared_data, flood_points, tmp_path, capsys
):
    system = load_system(learnt)
    stored = load_learnt(learnt)
    names = ["dry ground", "flood  WATER"]  # any order, case and spacing
    vectors = class_vectors(system, names)
    torch.testing.assert_close(vectors, stored.vectors[[1, 0]], rtol=0, atol=0)  # the stored tensors as is
    prompted = class_vectors(system, ["dry ground soil"])  # not learnt: its prompt encoding
    assert not torch.allclose(prompted[0], stored.vectors[1])

    out = tmp_path / "seg"
    argv = ["segment", str(shared_data.joinpath(*S2)), "--classes", ", ".join(names), "--out", str(out)]
    assert run_app([*argv, "--model", str(learnt), "--window", "256", "--overlap", "0"]) == 0
    assert "untrained" not in capsys.readouterr().err  # learnt names count as trained in any case/spacing
    with rasterio.open(out / "Spain_7370579_S2Hand_classes.tif") as src:
        segment_classes = src.read(1)
    # what learn's own scoring decides at the labelled pixels (learnt order: "Flood water", "dry ground")
    raster = prepare_rasters([shared_data.joinpath(*S2)], read_labels(flood_points, "cover"))[0]
    head = system.segmentation
    windows = labelled_windows(system, [raster], 256)
    agree = total = 0
    with torch.no_grad():
        for (top, left), window in zip(window_starts(raster.classes, 256), windows, strict=True):
            probs = head.probabilities(pixel_logits(head, window, stored.vectors)[None, :, :, None])
            learnt_decision = probs[0, :, :, 0].argmax(0).numpy()  # 0 flood water, 1 dry ground, 2 none
            rows, cols = np.nonzero(raster.classes[top : top + 256, left : left + 256] >= 0)  # row-major
            assert len(rows) == len(learnt_decision)
            seg = segment_classes[top + rows, left + cols]  # 0 dry ground, 1 flood water, 2 none
            agree += int((np.choose(seg, [1, 0, 2]) == learnt_decision).sum())
            total += len(seg)
    assert total > 0 and agree / total >= 0.98  # windows aligned (no overlap): only near-ties may differ


def _points(crs, xy: list[tuple[float, float]], classes: list[str], field: str = "cover"):
    return gpd.GeoDataFrame({field: classes}, geometry=[Point(*p) for p in xy], crs=crs)


@pytest.mark.parametrize("problem", ["no overlap", "missing field", "one class", "unreadable"])
def test_bad_labels_exit_2_and_write_nothing(
    problem, tiny_model_dir, shared_data, flood_points, tmp_path, capsys
):
    labels = tmp_path / "labels.gpkg"
    if problem == "no overlap":
        _points("EPSG:4326", [(10.0, 50.0), (10.1, 50.1)], ["a", "b"]).to_file(labels)  # Germany, not Spain
        message = "no labelled feature overlaps the raster"
    elif problem == "missing field":
        _points("EPSG:4326", [(10.0, 50.0), (10.1, 50.1)], ["a", "b"], field="klass").to_file(labels)
        message = "has no field 'cover'; its fields are ['klass']"
    elif problem == "one class":
        gpd.read_file(flood_points).assign(cover="water").to_file(labels)
        message = "holds 1 class ['water']"
    else:
        labels.write_bytes(b"\x00" * 64)
        message = "cannot read it as a vector file"
    out = tmp_path / "out"
    assert run_app(learn_args(shared_data, labels, out, tiny_model_dir)) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and str(labels) in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["labels.gpkg"]


def test_existing_folder_is_kept_unless_overwrite(
    tiny_model_dir, shared_data, flood_points, tmp_path, capsys
):
    out = tmp_path / "model"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert run_app(learn_args(shared_data, flood_points, out, tiny_model_dir, "--folds", "0")) == 2
    assert "not empty" in capsys.readouterr().err and (out / "mine.txt").exists()
    assert (
        run_app(learn_args(shared_data, flood_points, out, tiny_model_dir, "--folds", "0", "--overwrite"))
        == 0
    )
    assert not (out / "mine.txt").exists() and (out / LEARNT_WEIGHTS).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary or old folder left


def test_broken_raster_exit_2_and_write_nothing(tiny_model_dir, flood_points, tmp_path, capsys):
    raster = tmp_path / "random.tif"
    raster.write_bytes(np.random.default_rng(0).bytes(4096))
    out = tmp_path / "out"
    argv = ["learn", str(raster), "--labels", str(flood_points), "--class-field", "cover", "--out", str(out)]
    assert run_app([*argv, "--model", str(tiny_model_dir)]) == 2
    assert "random.tif" in " ".join(capsys.readouterr().err.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["random.tif"]


def test_learnt_vocabulary_lists_learnt_then_kept_base_classes(
    tiny_model_dir, shared_data, flood_points, tmp_path
):
    import shutil

    from rsneo.heads.vocabulary import TrainedClass, Vocabulary, load_vocabulary, save_vocabulary

    folder = tmp_path / "base"
    shutil.copytree(tiny_model_dir, folder)
    base = Vocabulary((TrainedClass("water", ("a satellite image of water",), {"iou": 0.8}, ("lake",)),
                       TrainedClass("land", ("a satellite image of land",))))  # fmt: skip
    save_vocabulary(folder, base)
    out = tmp_path / "learnt"
    assert run_app(learn_args(shared_data, flood_points, out, folder, "--features", "all")) == 0
    record = json.loads((out / LEARN_RECORD).read_text())
    kept, dropped = record["base_classes"]["kept"], record["base_classes"]["dropped"]
    assert set(kept) | set(dropped) == {"water", "land"} and not set(kept) & set(dropped)
    vocabulary = load_vocabulary(out)
    assert vocabulary.names == ("Flood water", "dry ground", *[n for n in ("water", "land") if n in kept])
    for c in vocabulary.classes[2:]:
        original = next(b for b in base.classes if b.name == c.name)
        assert c.prompts == original.prompts and c.held_out.items() >= original.held_out.items()
        assert c.synonyms == original.synonyms
    assert record["features"]["features"] == "all" and record["features"]["inner_loss"] == {}


def _write_config(path: Path, shared_data, labels: Path, model: Path, out: Path) -> Path:
    path.write_text(
        "rasters: [" + str(shared_data.joinpath(*S2)) + "]\n"
        f"labels: {labels}\nclass_field: cover\nmodel: {model}\nout: {out}\n"
        "settings:\n  steps: 4\n  features: all\n"
    )
    return path


def test_config_file_and_options_give_the_same_model(tiny_model_dir, shared_data, flood_points, tmp_path):
    """`rsneo learn --config FILE KEY=VALUE` and the same run spelt as options write the same learnt model."""
    by_options = tmp_path / "options"
    argv = learn_args(
        shared_data, flood_points, by_options, tiny_model_dir, "--features", "all", "--seed", "3"
    )
    assert run_app([a if a != "5" else "4" for a in argv]) == 0  # --steps 4
    config = _write_config(tmp_path / "learn.yaml", shared_data, flood_points, tiny_model_dir, tmp_path / "x")
    by_config = tmp_path / "config"
    assert run_app(["learn", "--config", str(config), f"out={by_config}", "settings.seed=3"]) == 0
    a, b = load_learnt(by_options), load_learnt(by_config)
    assert a.names == b.names
    torch.testing.assert_close(a.vectors, b.vectors, rtol=0, atol=1e-6)
    record_a = json.loads((by_options / LEARN_RECORD).read_text())
    record_b = json.loads((by_config / LEARN_RECORD).read_text())
    assert record_a["settings"] == record_b["settings"] and record_a["settings"]["seed"] == 3
    assert record_a["settings"]["steps"] == 4 and record_a["holdout"] == record_b["holdout"]
    # options typed on the command line win over the config
    over = tmp_path / "over"
    assert (
        run_app(["learn", "--config", str(config), "--out", str(over), "--steps", "2", "--folds", "0"]) == 0
    )
    record = json.loads((over / LEARN_RECORD).read_text())
    assert record["settings"]["steps"] == 2 and record["settings"]["seed"] == 0
