"""`rsneo learn`: new classes from polygons/points on real imagery, scored on a spatial hold-out, and used by
`segment --model` under the learnt names."""

from __future__ import annotations

import copy
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
    base_classes_kept,
    choose_features,
    feature_centres,
    fit_head,
    labelled_windows,
    pixel_logits,
    prepare_rasters,
    spatial_holdout,
    window_starts,
)

S2 = ("sen1floods11", "S2", "Spain_7370579_S2Hand.tif")


@pytest.fixture(scope="module")
def flood_points(water_label_points) -> Path:
    """12 points per class drawn from the hand-labelled water mask, saved in web mercator (EPSG:3857)."""
    return water_label_points(12, seed=0, name="points.gpkg", buffer_px=1.5, to_crs=3857)


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
    from rsneo.data.documents import image_documents
    from rsneo.heads.features import image_features
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
                             LearnSettings(steps=3, features="all"))  # fmt: skip
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


@pytest.fixture(scope="module")
def flood_windows(tiny_system, shared_data, flood_points):
    labels = read_labels(flood_points, "cover")
    raster = prepare_rasters([shared_data.joinpath(*S2)], labels)[0]
    return labels, labelled_windows(tiny_system, [raster], 256)


def test_pixels_only_head_ignores_the_backbone_context(tiny_system, flood_windows):
    """--features pixels: the context projection is zeroed and stays so; logits depend on the bands only."""
    labels, windows = flood_windows
    init = torch.randn(2, tiny_system.config.hidden_size)
    use = torch.ones(24, dtype=torch.bool)
    head, vectors = fit_head(
        tiny_system.segmentation, init, windows, use, LearnSettings(steps=4, features="pixels")
    )
    assert torch.count_nonzero(head.decoder.to_full.weight) == 0
    assert (
        torch.count_nonzero(tiny_system.segmentation.decoder.to_full.weight) > 0
    )  # the base head is untouched
    w = windows[0]
    shuffled = type(w)(torch.randn_like(w.context), w.pixels, w.wavelengths, w.classes, w.feature)
    with torch.no_grad():
        torch.testing.assert_close(pixel_logits(head, w, vectors), pixel_logits(head, shuffled, vectors))
    full, _ = fit_head(tiny_system.segmentation, init, windows, use, LearnSettings(steps=4, features="all"))
    assert torch.count_nonzero(full.decoder.to_full.weight) > 0
    with pytest.raises(ValueError, match="features"):
        fit_head(tiny_system.segmentation, init, windows, use, LearnSettings(steps=1, features="auto"))


def test_auto_features_choose_by_inner_holdout_of_the_training_features(
    tiny_system, flood_windows, monkeypatch
):
    """ "auto" trains both candidates on inner spatial splits of the training features only and keeps the
    better inner mean IoU; the features outside `use` (the scored hold-out) are never trained or scored."""
    import rsneo.train.learn as learn_module

    labels, windows = flood_windows
    init = torch.randn(2, tiny_system.config.hidden_size)
    use = torch.ones(24, dtype=torch.bool)
    use[:3] = use[12:15] = False  # an outer hold-out of 3 features per class
    seen = []
    real_fit, real_loss = learn_module.fit_head, learn_module.holdout_loss

    def fit(head, init_vectors, windows, train, settings, tick=None):
        seen.append(("fit", settings.features, train.clone()))
        return real_fit(head, init_vectors, windows, train, settings, tick)

    def loss(head, vectors, windows, check, k):
        seen.append(("score", None, check.clone()))
        return real_loss(head, vectors, windows, check, k)

    monkeypatch.setattr(learn_module, "fit_head", fit)
    monkeypatch.setattr(learn_module, "holdout_loss", loss)
    settings = LearnSettings(steps=3, select_rounds=2)
    choice = choose_features(tiny_system.segmentation, init, windows, use, feature_centres(labels),
                             labels.class_ids, settings)  # fmt: skip
    assert choice.features in ("all", "pixels") and set(choice.inner_loss) == {"all", "pixels"}
    inner = choice.inner_loss
    assert all(v > 0 for v in inner.values())
    assert choice.features == ("pixels" if inner["pixels"] < inner["all"] else "all")  # ties: "all"
    assert [(kind, mode) for kind, mode, _ in seen] == [("fit", "all"), ("score", None), ("fit", "pixels"),
                                                        ("score", None)] * 2  # fmt: skip
    for _, _, mask in seen:
        assert not (mask & ~use).any()  # the outer hold-out is never touched
    fits = [mask for kind, _, mask in seen if kind == "fit"]
    scored = [mask for kind, _, mask in seen if kind == "score"]
    for train, check in zip(fits, scored, strict=True):
        assert check.any() and not (train & check).any()
    fixed = LearnSettings(features="pixels")
    centres = feature_centres(labels)
    assert choose_features(tiny_system.segmentation, init, windows, use, centres, labels.class_ids,
                           fixed).features == "pixels"  # fmt: skip


def test_base_classes_kept_while_decided_as_before(tiny_model_dir, flood_windows, tmp_path):
    """A base class stays in the vocabulary while the retrained head still decides it as the base head did."""
    import shutil

    from rsneo.heads.vocabulary import TrainedClass, Vocabulary, save_vocabulary

    folder = tmp_path / "base"
    shutil.copytree(tiny_model_dir, folder)
    save_vocabulary(folder, Vocabulary((TrainedClass("water", ("a satellite image of water",), {"iou": 0.8}),
                                        TrainedClass("land", ("a satellite image of land",)))))  # fmt: skip
    system = load_system(folder)
    _, windows = flood_windows
    same = base_classes_kept(system, system.segmentation, windows, ["Flood water", "dry ground"])
    assert set(same["kept"]) == {"water", "land"} and not same["dropped"] and same["pixel_agreement"] == 1.0
    assert all(v in (None, 1.0) for v in same["kept"].values())
    flipped = copy.deepcopy(system.segmentation)
    with torch.no_grad():  # every pixel embedding negated: each pixel's decision among the two classes flips
        flipped.decoder.out.weight.neg_()
        flipped.decoder.out.bias.neg_()
    other = base_classes_kept(system, flipped, windows, ["Flood water", "dry ground"])
    assert other["pixel_agreement"] < 0.9 and other["dropped"]
    assert set(other["kept"]) | set(other["dropped"]) == {"water", "land"}
    retaught = base_classes_kept(system, system.segmentation, windows, ["WATER", "dry ground"])
    assert set(retaught["kept"]) == {"land"}  # a name taught again is the learnt class, not the base one


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
        run_app(["learn", "--config", str(config), "--out", str(over), "--steps", "2", "--holdout", "0"]) == 0
    )
    record = json.loads((over / LEARN_RECORD).read_text())
    assert record["settings"]["steps"] == 2 and record["settings"]["seed"] == 0


def test_holdout_loss_is_the_weighted_training_loss(tiny_system, flood_windows):
    """Each class weighs the same: a head sure of every held-out pixel's class scores near 0, a uniform one
    log(K + 1) (K classes and "none of these")."""
    from rsneo.train.learn import holdout_loss

    _, windows = flood_windows
    head = copy.deepcopy(tiny_system.segmentation)
    use = torch.ones(24, dtype=torch.bool)
    with torch.no_grad():
        head.decoder.out.weight.zero_()
        head.decoder.out.bias.zero_()  # every pixel embedding 0: every logit 0, "none" at 0 too
    vectors = torch.randn(2, tiny_system.config.hidden_size)
    assert holdout_loss(head, vectors, windows, use, 2) == pytest.approx(np.log(3), rel=1e-4)


def test_learn_config_defaults_are_the_settings_defaults(tmp_path, capsys):
    from dataclasses import asdict

    from rsneo.cli.learn import learn_config

    cfg = learn_config(None, [])
    assert dict(cfg.settings) == asdict(LearnSettings())
    quick = learn_config("quick", ["settings.seed=2"])
    assert quick.settings.steps < LearnSettings().steps and quick.settings.seed == 2
    assert run_app(["learn", "--config", "no_such_experiment"]) == 2
    assert "no such learn experiment" in capsys.readouterr().err
    assert run_app(["learn", "--config", "sen1floods11_s2"]) == 2  # labels, class_field, out still missing
    assert "missing labels, class_field, out" in " ".join(capsys.readouterr().err.split())


def test_a_learnt_folder_records_the_learn_rasters_and_keeps_the_change_record(shared_data):
    """The segmentation head was retrained on the learn rasters (their sensor and measured pixel size); the
    change head, frozen, keeps the starting model's record, and none when it had none."""
    from rsneo.heads.domain import HeadDomain, TrainingDomain
    from rsneo.train.learn import learnt_domain

    s2 = shared_data / "sen1floods11" / "S2" / "Spain_7370579_S2Hand.tif"
    record = {"rasters": [str(s2)], "sensor": "sentinel2_l1c"}
    base = TrainingDomain({"change": HeadDomain(("naip",), (5.0, 5.0))})
    domain = learnt_domain(record, base)
    assert domain.heads["segmentation"].sensors == ("sentinel2_l1c",)
    assert domain.heads["segmentation"].pixel_size_m == pytest.approx((8.86, 8.86), abs=0.05)
    assert domain.heads["change"] == base.heads["change"]
    assert set(learnt_domain(record).heads) == {"segmentation"}
    photo = {"rasters": [str(shared_data / "levir_cd" / "B" / "test_7_0256_0512.png")], "sensor": "rgb"}
    assert learnt_domain(photo).heads["segmentation"] == HeadDomain(("rgb",))  # size unknown: not checked
