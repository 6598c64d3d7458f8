"""End to end on the CPU: `rsneo train` writes its outputs, a resumed run equals an uninterrupted one,
export loads."""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

import pytest
import torch

from rsneo.cli import run_app
from rsneo.model.positions import ImageTokens

FAST = ["trainer.progress_bar=false", "trainer.tensorboard=false", "data=sen1floods11"]


def losses(metrics: Path) -> dict[int, float]:
    with open(metrics, newline="") as handle:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(handle) if r.get("train/loss")}


@pytest.fixture(scope="module")
def smoke_run(shared_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke")
    code = run_app(["train", "experiment=smoke", f"out_dir={out}", f"data_root={shared_data}"])
    assert code == 0
    return out


def test_smoke_experiment_writes_metrics_checkpoint_and_loss_curve(smoke_run):
    assert sorted(losses(smoke_run / "metrics.csv")) == list(range(6))
    assert (smoke_run / "checkpoints" / "last.ckpt").is_file()
    assert (smoke_run / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (smoke_run / "tokenizer" / "tokenizer.json").is_file()
    assert any((smoke_run / "tensorboard").iterdir())
    header = (smoke_run / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in ["train/masked_bands_loss", "train/lm_loss", "train/segmentation_loss", "train/loss"]:
        assert column in header


def test_checkpoint_holds_only_tensors_and_plain_types(smoke_run):
    checkpoint = torch.load(
        smoke_run / "checkpoints" / "last.ckpt", weights_only=True
    )  # raises on any object
    assert checkpoint["global_step"] == 6
    assert checkpoint["rsneo"]["run_config"]["name"] == "smoke"
    assert checkpoint["rsneo"]["segmentation_classes"] == ["land", "water"]  # what the head saw, in order
    assert "tokenizer.json" in checkpoint["rsneo"]["tokenizer_files"]


def test_export_writes_a_folder_that_from_pretrained_and_the_products_load(smoke_run, tmp_path):
    from rsneo.heads.system import load_system
    from rsneo.model.causal_lm import RSNeoForCausalLM

    folder = tmp_path / "model"
    assert run_app(["export", str(smoke_run / "checkpoints" / "last.ckpt"), str(folder)]) == 0
    checkpoint = torch.load(smoke_run / "checkpoints" / "last.ckpt", weights_only=True)
    model = RSNeoForCausalLM.from_pretrained(folder)
    assert model.config.band_groups == "fold"  # the smoke run's data.band_groups, which prediction follows
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, checkpoint["state_dict"][f"model.{name}"]), name
    system = load_system(folder)
    assert system.trained_heads == ("segmentation", "change")  # smoke trains every objective
    for head, prefix in ((system.segmentation, "seg_head"), (system.change, "change_head")):
        for name, tensor in head.state_dict().items():
            assert torch.equal(tensor, checkpoint["state_dict"][f"{prefix}.{name}"]), name
    assert (
        system.tokenizer.get_vocab() == system.tokenizer.get_vocab()
        and len(system.tokenizer) <= model.config.vocab_size
    )
    # the classes the segmentation head trained on, with the other names it was taught under
    from rsneo.heads.class_words import CLASS_WORDS

    assert system.vocabulary.names == ("land", "water")
    water = system.vocabulary.classes[1]
    assert water.synonyms == CLASS_WORDS["water"][1:] and "lake" in water.synonyms
    assert water.prompts[:2] == ("a satellite image of water", "a satellite image of open water")
    assert water.held_out == {}  # measured afterwards (benchmarks/vocabulary.py --write)
    # a second export into the now non-empty folder needs --overwrite
    assert run_app(["export", str(smoke_run / "checkpoints" / "last.ckpt"), str(folder)]) == 2


@pytest.mark.filterwarnings("ignore:The dirpath has changed:UserWarning")  # resumed elsewhere on purpose
def test_resumed_run_continues_exactly_like_an_uninterrupted_one(shared_data, tmp_path):
    # one thread in all three runs: the thread policy follows the machine's load, and another thread count
    # sums in another order (the last bits differ), which is not what this test is about
    common = ["experiment=smoke", f"data_root={shared_data}", "trainer.max_steps=4", "trainer.threads=1"]
    common += FAST
    whole, first, second = tmp_path / "whole", tmp_path / "first", tmp_path / "second"
    assert run_app(["train", *common, f"out_dir={whole}"]) == 0
    assert run_app(["train", *common, f"out_dir={first}", "trainer.stop_at_step=2"]) == 0
    resume = first / "checkpoints" / "last.ckpt"
    assert torch.load(resume, weights_only=True)["global_step"] == 2
    assert run_app(["train", *common, f"out_dir={second}", f"resume={resume}"]) == 0
    uninterrupted, before, after = (
        losses(whole / "metrics.csv"),
        losses(first / "metrics.csv"),
        losses(second / "metrics.csv"),
    )
    assert sorted(before) == [0, 1] and sorted(after) == [2, 3]
    for step, value in {**before, **after}.items():
        assert value == pytest.approx(uninterrupted[step], rel=1e-5, abs=1e-6), step
    a = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(second / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resumed_in_place_keeps_its_metrics_and_shows_steps_of_max_steps(shared_data, tmp_path, capsys):
    common = ["train", "experiment=smoke", f"data_root={shared_data}", f"out_dir={tmp_path}", *FAST[1:]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_app([*common, "trainer.max_steps=4", "trainer.stop_at_step=2"]) == 0
        resume = f"resume={tmp_path / 'checkpoints' / 'last.ckpt'}"
        assert run_app([*common, "trainer.max_steps=4", resume]) == 0
    assert sorted(losses(tmp_path / "metrics.csv")) == [0, 1, 2, 3]  # kept by ResumableCSVLogger
    assert not [w for w in caught if "logs directory" in str(w.message)], [str(w.message) for w in caught]
    shown = capsys.readouterr()
    assert re.search(r"step [━╸ ]+ 2/4", shown.out) and re.search(r"step [━╸ ]+ 4/4", shown.out), shown.out
    assert "Epoch" not in shown.out + shown.err


def test_bad_resume_path_and_bad_overrides_exit_with_2(tmp_path, shared_data):
    missing = tmp_path / "none.ckpt"
    args = [
        "train",
        "experiment=smoke",
        f"resume={missing}",
        f"data_root={shared_data}",
        f"out_dir={tmp_path}",
    ]
    assert run_app(args) == 2
    assert run_app(["train", "experiment=nope"]) == 2
    assert run_app(["train", "notakeyvalue"]) == 2


def test_tokenizer_given_relative_to_the_repository_or_as_bundled_is_found(tmp_path, monkeypatch):
    from rsneo.errors import InputError
    from rsneo.train.run import BUNDLED_TOKENIZER, build_tokenizer

    if not (BUNDLED_TOKENIZER / "tokenizer.json").is_file():
        pytest.skip("no bundled tokenizer in rsneo/assets")
    monkeypatch.chdir(tmp_path)
    by_path = build_tokenizer("rsneo/assets/tokenizer", None, tmp_path, 512)
    assert by_path.get_vocab() == build_tokenizer("bundled", None, tmp_path, 512).get_vocab()
    with pytest.raises(InputError, match="nope: expected a tokenizer folder with tokenizer.json"):
        build_tokenizer("nope", None, tmp_path, 512)


def test_a_new_stage_starts_from_an_exported_folder_with_its_weights_and_tokenizer(
    smoke_run, tmp_path, shared_data
):
    from rsneo.model.tokenizer import load_tokenizer
    from rsneo.train.config import load_config
    from rsneo.train.run import build_run

    folder = tmp_path / "stage1"
    assert run_app(["export", str(smoke_run / "checkpoints" / "last.ckpt"), str(folder)]) == 0
    cfg = load_config(
        ["experiment=smoke", "stage=stage2", f"model.init_from={folder}", f"out_dir={tmp_path}"]
    )
    run = build_run(cfg)
    assert all(m.training for m in run.module.model.modules())  # from_pretrained loads in eval mode
    saved = torch.load(smoke_run / "checkpoints" / "last.ckpt", weights_only=True)
    for name, tensor in run.module.model.state_dict().items():
        assert torch.equal(tensor, saved["state_dict"][f"model.{name}"]), name
    assert run.tokenizer.get_vocab() == load_tokenizer(smoke_run / "tokenizer").get_vocab()


NAIP = "timeseries/naip_m4709963/m_4709963_se_14_1_{}.tif"


def test_torchgeo_raster_trains_on_a_users_folder_of_geotiffs(shared_data, tmp_path):
    import shutil

    import numpy as np

    from rsneo.data.datasets import random_raster_samples, sample_scene
    from rsneo.data.frames import normalise
    from rsneo.train.config import load_config
    from rsneo.train.run import build_run

    folder = tmp_path / "naip"
    folder.mkdir()
    for date in ("20090818", "20100629"):
        shutil.copy(shared_data / NAIP.format(date), folder)
    args = [
        "experiment=smoke",
        "data=torchgeo_raster",
        f"data.root={folder}",
        "data.sensor=naip",
        "data.samples_per_epoch=6",
        "trainer.max_steps=2",
        f"data_root={shared_data}",
        *FAST[:2],
    ]
    assert run_app(["train", *args, f"out_dir={tmp_path / 'run'}"]) == 0
    assert sorted(losses(tmp_path / "run" / "metrics.csv")) == [0, 1]

    run = build_run(load_config([*args, f"out_dir={tmp_path / 'built'}"]))
    run.datamodule.setup("fit")
    assert len(run.datamodule.samples) == 6
    batch = next(iter(run.datamodule.train_dataloader()))
    tokens = ImageTokens.of(run.module.model.config)
    per_image = (64 // 32) ** 2  # one folded group per 64 px window, one token per 32x32 pixels
    assert int((batch.inputs.input_ids == tokens.context).sum()) == 2 * per_image
    # the frames are the sampler's windows of those files, normalised: the same draws give the same pixels
    draws = random_raster_samples(folder, "naip", 64, 6, seed=0)
    expected = [normalise(sample_scene(d))[0] for d in draws]
    for image in batch.inputs.images:
        pixels = image.pixels.numpy()
        assert np.isfinite(pixels).all() and pixels.std() > 0
        assert min(float(np.abs(pixels - e).max()) for e in expected) < 1e-5


def test_torchgeo_raster_with_no_geotiffs_names_the_folder(shared_data, tmp_path, capsys):
    from rsneo.errors import InputError
    from rsneo.train.config import load_config
    from rsneo.train.run import build_run

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no rasters here")
    run = build_run(
        load_config(
            [
                "experiment=smoke",
                "data=torchgeo_raster",
                f"data.root={empty}",
                "data.sensor=naip",
                f"data_root={shared_data}",
                f"out_dir={tmp_path / 'o'}",
            ]
        )
    )
    with pytest.raises(InputError, match=re.escape(f"{empty}: expected GeoTIFFs")):
        run.datamodule.setup("fit")
    # without a folder at all (the shipped option leaves root and sensor to the user)
    capsys.readouterr()
    args = ["train", "data=torchgeo_raster", f"data_root={shared_data}", f"out_dir={tmp_path / 'p'}"]
    assert run_app(args) == 2
    assert "expected data.root (a folder of GeoTIFFs) and data.sensor" in capsys.readouterr().err
