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
from rsneo.train.learn import (
    LearnSettings,
    fit_head,
    labelled_windows,
    pixel_logits,
    prepare_rasters,
    spatial_holdout,
    window_starts,
)

S2 = ("sen1floods11", "S2", "Spain_7370579_S2Hand.tif")
LABEL = ("sen1floods11", "Labels", "Spain_7370579_LabelHand.tif")


@pytest.fixture(scope="module")
def flood_points(shared_data, tmp_path_factory) -> Path:
    """12 points per class drawn from the hand-labelled water mask, saved in web mercator (EPSG:3857)."""
    with rasterio.open(shared_data.joinpath(*LABEL)) as src:
        label, transform, crs = src.read(1), src.transform, src.crs
    rng = np.random.default_rng(0)
    records = []
    for value, name in ((1, "Flood water"), (0, "dry ground")):
        rows, cols = np.nonzero(label == value)
        for i in rng.choice(len(rows), 12, replace=False):
            x, y = transform @ (cols[i] + 0.5, rows[i] + 0.5)
            records.append({"cover": name, "geometry": Point(x, y).buffer(abs(transform.a) * 1.5)})
    path = tmp_path_factory.mktemp("labels") / "points.gpkg"
    gpd.GeoDataFrame(records, crs=crs).to_crs(3857).to_file(path)
    return path


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


def test_spatial_holdout_keeps_features_whole_and_every_class_trained():
    rng = np.random.default_rng(1)
    centres = rng.uniform(0, 1000, size=(60, 2))
    classes = np.repeat([0, 1, 2], 20)
    classes[-1] = 3  # a class with a single feature cannot be held out
    held = spatial_holdout(centres, classes, share=0.25, blocks=4, seed=0)
    for c in (0, 1, 2):
        mine = held[classes == c]
        assert 0 < mine.sum() < len(mine)  # each class is both trained and scored
    assert not held[classes == 3].any()
    # held-out features are whole blocks (a 4x4 cut of their extent): no block has features on both sides
    lo, size = centres.min(0), (centres.max(0) - centres.min(0)) / 4
    block = (np.minimum(((centres - lo) / size).astype(int), 3) * [4, 1]).sum(1)
    assert not set(block[held]) & set(block[~held])
    assert (held == spatial_holdout(centres, classes, share=0.25, blocks=4, seed=0)).all()  # reproducible


def test_labelled_pixel_path_equals_the_segmentation_head(tiny_system, shared_data, flood_points):
    """The cheap training path (frozen context cached at labelled pixels) gives the head's own logits."""
    from rsneo.heads.segmentation import image_documents, image_features
    from rsneo.io.dataset import open_raster
    from rsneo.io.windows import RasterWindows

    labels = read_labels(flood_points, "cover")
    raster = prepare_rasters([shared_data.joinpath(*S2)], labels)[0]
    windows = labelled_windows(tiny_system, [raster], 256)
    vectors = torch.randn(2, tiny_system.config.hidden_size)
    head = tiny_system.segmentation
    first = windows[0]
    with open_raster(raster.path) as src:
        pixels, valid = RasterWindows([src]).read(0, 0, 256)
    inputs = image_documents([[raster.layout.images(pixels, valid)]], tiny_system.config)
    with torch.no_grad():
        full = head(image_features(tiny_system.model, inputs, head.config.early_layer), vectors)[0]  # (K,S,S)
        cheap = pixel_logits(head, first, vectors)  # (K, n)
    mask = torch.from_numpy((raster.classes[:256, :256] >= 0) & valid)
    assert cheap.shape[1] == int(mask.sum()) > 0
    # float32 sums in another order (a 1x1 conv after vs before bilinear upsampling): ~1e-6 relative
    torch.testing.assert_close(cheap, full[:, mask], rtol=1e-4, atol=1e-4)


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
        assert record["counts"][name]["held_out"] >= 1
        assert 0.0 <= scores[name]["iou"] <= scores[name]["f1"] <= 1.0  # F1 >= IoU always
        assert scores[name]["features"] == record["counts"][name]["held_out"]
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
    assert run_app(learn_args(shared_data, flood_points, out, tiny_model_dir, "--holdout", "0")) == 2
    assert "not empty" in capsys.readouterr().err and (out / "mine.txt").exists()
    assert (
        run_app(learn_args(shared_data, flood_points, out, tiny_model_dir, "--holdout", "0", "--overwrite"))
        == 0
    )
    assert not (out / "mine.txt").exists() and (out / LEARNT_WEIGHTS).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary or old folder left


def test_bf16_backbone(tiny_model_dir, shared_data, flood_points):
    """A bf16 backbone feeds the float32 head training; learnt vectors come back in the model's dtype."""
    system = load_system(tiny_model_dir)
    system.model.to(torch.bfloat16)
    raster = prepare_rasters([shared_data.joinpath(*S2)], read_labels(flood_points, "cover"))[0]
    windows = labelled_windows(system, [raster], 256)
    assert all(w.context.dtype == torch.float32 and torch.isfinite(w.context).all() for w in windows)
    use = torch.ones(24, dtype=torch.bool)
    head, vectors = fit_head(system.segmentation, torch.zeros(2, system.config.hidden_size), windows, use,
                             LearnSettings(steps=3))  # fmt: skip
    assert torch.isfinite(vectors).all() and vectors.dtype == torch.float32
    assert not torch.equal(vectors, torch.zeros_like(vectors))  # the vectors trained


def test_broken_raster_exit_2_and_write_nothing(tiny_model_dir, flood_points, tmp_path, capsys):
    raster = tmp_path / "random.tif"
    raster.write_bytes(np.random.default_rng(0).bytes(4096))
    out = tmp_path / "out"
    argv = ["learn", str(raster), "--labels", str(flood_points), "--class-field", "cover", "--out", str(out)]
    assert run_app([*argv, "--model", str(tiny_model_dir)]) == 2
    assert "random.tif" in " ".join(capsys.readouterr().err.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["random.tif"]
