"""`rsneo finetune` end to end on the tiny model (rsneo.train.finetune): the model folder it writes and what
`change`, `segment` and `ask` make of it, resume, bf16, and classes of two taxonomies in one head."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from rsneo.train.config import load_config

LEVIR = "levir_cd"
PAIRS = ("test_2_0000_0000", "test_7_0256_0512", "train_36_0512_0512")  # the `levir_crops` fixture
SMALL = ["finetune.widths=[8,16,16,24]", "finetune.max_minutes=null", "trainer.progress_bar=false"]


def change_config(levir: Path, model: Path, tmp: Path, *extra: str):
    return load_config([
        "experiment=finetune_change", f"data.root={levir}", f"model.init_from={model}",
        f"out_dir={tmp / 'run'}", f"finetune.out={tmp / 'model'}", "data.tile=64", "data.batch_size=2",
        "finetune.val_block=32", "finetune.steps_per_epoch=2", "finetune.max_epochs=2", *SMALL, *extra,
    ])  # fmt: skip


def quietly(run, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pixel units of the PNGs, Lightning's notes on tiny data
        return run(*args)


@pytest.fixture(scope="module")
def change_run(levir_crops, tiny_model_dir, tmp_path_factory):
    from rsneo.train.finetune import finetune

    tmp = tmp_path_factory.mktemp("finetune_change")
    return quietly(finetune, change_config(levir_crops, tiny_model_dir, tmp)), tmp


def test_change_fine_tune_writes_a_model_folder_with_its_record(change_run):
    result, tmp = change_run
    out = tmp / "model"
    heads = json.loads((out / "heads.json").read_text())
    assert heads["change"]["decoder"] == "unet" and heads["change"]["widths"] == [8, 16, 16, 24]
    domain = json.loads((out / "domain.json").read_text())
    assert domain["heads"]["change"] == {"sensors": ["rgb"], "pixel_size_m": None}  # PNGs: no pixel size
    record = json.loads((out / "finetune.json").read_text())
    assert record["task"] == "change" and record["samples"] == list(PAIRS)
    assert record["trained"] == "the head only (backbone frozen)"
    assert record["scores"].keys() >= {"f1", "iou", "precision", "recall", "kappa", "boundary_f1"}
    assert 0 <= result.scores["iou"] <= result.scores["f1"] <= 1  # F1 >= IoU on the same pixels
    assert result.epochs == 2 and result.best_epoch in (1, 2)
    assert "spatial blocks of 32 px" in result.validation
    # the backbone did not train: its weights are the starting folder's, byte for byte
    start = Path(json.loads((out / "finetune.json").read_text())["started_from"])
    assert (out / "model.safetensors").read_bytes() == (start / "model.safetensors").read_bytes()


def test_rsneo_change_maps_with_the_fine_tuned_head_as_training_saw_the_pair(
    change_run, shared_data, tmp_path
):
    """One path: the change map `rsneo change` writes is the head's decision on the inputs training builds
    for the same pair (same normalisation, tokens, decoder), except at pixels within rounding of the cut. A
    whole 256^2 pair: one prediction window, as training's whole-sample validation sees it."""
    from rsneo.data.frames import model_band_groups
    from rsneo.data.labelled import change_pairs
    from rsneo.heads.features import image_features
    from rsneo.heads.system import load_system
    from rsneo.predict.change import detect_change
    from rsneo.predict.requests import ChangeRequest
    from rsneo.train.finetune_data import chip_batch, prepare

    _, tmp = change_run
    system = load_system(tmp / "model")
    name = f"{PAIRS[0]}.png"
    pair = [shared_data / "levir_cd" / "A" / name, shared_data / "levir_cd" / "B" / name]
    request = ChangeRequest(rasters=tuple(pair), out=tmp_path / "change", min_area=0)  # no sieve
    outputs = quietly(lambda: detect_change(system, request))
    with rasterio.open(outputs.cog) as src:
        mapped = src.read(1)
    sample = next(s for s in quietly(change_pairs, shared_data / "levir_cd") if s.name == PAIRS[0])
    item = prepare(sample, model_band_groups(system.config), system.config.token_size)
    batch = chip_batch([item], [(item.pixels, item.train)], system.config)
    with torch.no_grad():
        features = image_features(system.model, batch["inputs"], system.change.config.early_layer, frames=2)
        logit = system.change(features)[0, 1].numpy()
    near_cut = np.abs(logit) < 1e-5  # the two paths' logits agree to a few 1e-7
    assert np.array_equal(mapped[~near_cut], (logit >= 0)[~near_cut].astype(np.uint8))
    assert near_cut.mean() < 0.01
    report = outputs.report.read_text()
    assert "fine-tuned on labelled pairs" in report


def test_a_run_started_again_resumes_and_ends_where_an_uninterrupted_one_does(
    change_run, levir_crops, tiny_model_dir, tmp_path
):
    from rsneo.heads.system import load_heads
    from rsneo.train.finetune import finetune

    straight, straight_dir = change_run
    stopped = change_config(levir_crops, tiny_model_dir, tmp_path, "trainer.stop_at_step=2")
    quietly(finetune, stopped)  # stops after the first epoch (2 steps): "killed" there
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    resumed = quietly(
        finetune, change_config(levir_crops, tiny_model_dir, tmp_path, "finetune.overwrite=true")
    )
    assert resumed.epochs == straight.epochs == 2
    rows = [row.split(",") for row in (tmp_path / "run" / "metrics.csv").read_text().splitlines()]
    column = rows[0].index("step")
    assert {int(float(r[column])) for r in rows[1:] if r[column]} >= {1, 3}  # both runs' steps kept
    heads = [load_heads(folder / "model", 64)[1] for folder in (straight_dir, tmp_path)]
    for p, q in zip(heads[0].state_dict().values(), heads[1].state_dict().values(), strict=True):
        assert torch.allclose(p.float(), q.float(), atol=1e-5)


def test_segmentation_on_two_taxonomies_keeps_both_in_one_head(shared_data, tiny_model_dir, tmp_path):
    """Sentinel-2 labelled land/water and Sentinel-1 labelled dry ground/flood water: one run (in bf16 mixed
    precision, as on a GPU), one head, all four names in vocabulary.json with their validation scores, each a
    trained name for `segment`."""
    from rsneo.heads.system import load_system
    from rsneo.heads.vocabulary import match_classes
    from rsneo.predict.requests import SegmentRequest
    from rsneo.predict.segment import segment_raster
    from rsneo.train.finetune import finetune

    flood = shared_data / "sen1floods11"
    cfg = load_config([
        "experiment=finetune_segment", f"model.init_from={tiny_model_dir}", f"out_dir={tmp_path / 'run'}",
        f"finetune.out={tmp_path / 'model'}", "data.tile=64", "data.batch_size=2",
        "finetune.steps_per_epoch=2", "finetune.max_epochs=1", "finetune.val_block=128",
        "trainer.precision=bf16-mixed", *SMALL,
        f"finetune.segment=[{{images: {flood / 'S2'}, masks: {flood / 'Labels'}, classes: '0=land,1=water', "
        f"ignore: -1}}, {{images: {flood / 'S1'}, masks: {flood / 'Labels'}, "
        f"classes: '0=dry ground,1=flood water', ignore: -1}}]",
    ])  # fmt: skip
    result = quietly(finetune, cfg)
    vocabulary = json.loads((tmp_path / "model" / "vocabulary.json").read_text())
    names = [c["name"] for c in vocabulary["classes"]]
    assert names == ["land", "water", "dry ground", "flood water"]
    for entry in vocabulary["classes"]:
        assert 0 <= entry["held_out"]["iou"] <= entry["held_out"]["f1"] <= 1
        assert "validation of rsneo finetune" in entry["held_out"]["data"]
    assert set(result.class_scores) == set(names)
    assert all(np.isfinite(result.scores[k]) for k in ("f1", "iou", "kappa"))
    system = load_system(tmp_path / "model")
    assert all(m.trained for m in match_classes(system, names))
    domain = json.loads((tmp_path / "model" / "domain.json").read_text())["heads"]["segmentation"]
    assert sorted(domain["sensors"]) == ["sentinel1_grd", "sentinel2_l1c"]
    s1 = next((flood / "S1").glob("*.tif"))
    request = SegmentRequest(raster=s1, classes=("dry ground", "flood water"), out=tmp_path / "seg")
    out = quietly(lambda: segment_raster(system, request))
    assert set(out.areas) >= {"dry ground", "flood water"}


def test_a_second_fine_tune_continues_the_head_and_keeps_the_earlier_classes(
    shared_data, tiny_model_dir, tmp_path
):
    """Fine-tuned on land/water, then (starting from that folder) on S1 with other names: the head continues,
    and vocabulary.json keeps land/water with their earlier scores, said to be earlier ones."""
    from rsneo.heads.system import load_system
    from rsneo.model.spectral import SAR_KEYS
    from rsneo.train.finetune import finetune

    flood = shared_data / "sen1floods11"

    def run(start: Path, out: str, images: str, classes: str):
        return quietly(finetune, load_config([
            "experiment=finetune_segment", f"model.init_from={start}", f"out_dir={tmp_path / out / 'run'}",
            f"finetune.out={tmp_path / out / 'model'}", "data.tile=64", "data.batch_size=2",
            "finetune.steps_per_epoch=1", "finetune.max_epochs=1", "finetune.val_block=128", *SMALL,
            f"finetune.segment=[{{images: {flood / images}, masks: {flood / 'Labels'}, classes: '{classes}', "
            "ignore: -1}]",
        ]))  # fmt: skip

    first = run(tiny_model_dir, "first", "S2", "0=land,1=water")
    second = run(tmp_path / "first" / "model", "second", "S1", "0=dry ground,1=flood water")
    assert not first.continued and second.continued
    vocabulary = json.loads((tmp_path / "second" / "model" / "vocabulary.json").read_text())
    entries = {c["name"]: c["held_out"] for c in vocabulary["classes"]}
    assert list(entries) == ["dry ground", "flood water", "land", "water"]
    assert entries["water"]["iou"] == first.class_scores["water"]["iou"]
    assert "measured before the later fine-tune" in entries["water"]["note"]
    assert "note" not in entries["flood water"]
    # the stem learnt rows for the polarisations it trained on (VV, VH), the others stay at their zeros
    heads = json.loads((tmp_path / "second" / "model" / "heads.json").read_text())
    assert heads["segmentation"]["polarisation"] is True
    stem = load_system(tmp_path / "second" / "model").segmentation.decoder.encoder.stem
    assert dict(zip(SAR_KEYS, (stem.polarisations.abs().amax(1) > 0).tolist(), strict=True)) == {
        "vv": True, "vh": True, "hh": False, "hv": False,
    }  # fmt: skip


def test_a_restarted_run_continues_from_the_latest_epoch_not_the_best_one(
    levir_crops, tiny_model_dir, tmp_path
):
    """`last.ckpt` is written at the end of every epoch, improved or not (Lightning's `save_last` writes it
    only with a new best, so a restart would repeat the epochs since the best): a run stopped after epoch 1
    and started again ends with the very state of an uninterrupted run."""
    from rsneo.train.finetune import finetune

    one = ("trainer.threads=1",)
    straight = quietly(finetune, change_config(levir_crops, tiny_model_dir, tmp_path / "a", *one))
    quietly(
        finetune, change_config(levir_crops, tiny_model_dir, tmp_path / "b", *one, "trainer.stop_at_step=2")
    )
    resumed = quietly(finetune, change_config(levir_crops, tiny_model_dir, tmp_path / "b", *one,
                                              "finetune.overwrite=true"))  # fmt: skip
    assert resumed.epochs == straight.epochs == 2
    last = [torch.load(tmp_path / run / "run" / "checkpoints" / "last.ckpt", weights_only=True)
            for run in ("a", "b")]  # fmt: skip
    assert last[0]["global_step"] == last[1]["global_step"] == 4  # the latest epoch's
    assert last[0]["state_dict"].keys() == last[1]["state_dict"].keys()
    for name, value in last[0]["state_dict"].items():
        assert torch.allclose(value.float(), last[1]["state_dict"][name].float(), atol=1e-5), name
