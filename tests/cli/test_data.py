"""The data commands (rsneo.cli.data): `sensors` lists the band registry, `info` describes real rasters, and
`prepare` turns archives into shards with statistics and a manifest (resumable, atomic, read back)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from torch.utils.data import DataLoader

from rsneo import atomic
from rsneo.cli import run_app
from rsneo.data.frames import scene_frames
from rsneo.data.recipes import RECIPES, load_tiles, tile_loader
from rsneo.data.shards import ShardDataset, prepare_shards, read_manifest
from rsneo.errors import InputError

BEN = "bigearthnet/BigEarthNet-S2-Example"
S2HAND = "sen1floods11/S2/Spain_7370579_S2Hand.tif"


def test_sensors_json_lists_the_registry_as_it_is(capsys):
    from rsneo.sensors import list_sensors

    assert run_app(["sensors", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in listed] == [s.name for s in list_sensors()]
    s2 = next(s for s in listed if s["name"] == "sentinel2_l1c")
    assert [b["name"] for b in s2["bands"]][:4] == ["B01", "B02", "B03", "B04"]
    assert s2["bands"][3]["common_name"] == "red" and s2["bands"][3]["wavelength_um"] == pytest.approx(0.665)
    assert s2["groups"]["rgb"] == ["B04", "B03", "B02"]


def test_sensors_add_registers_a_yaml_sensor_for_the_command(tmp_path, capsys, monkeypatch):
    from rsneo.sensors import registry

    monkeypatch.setattr(registry, "_USER", {})  # what --add registers stays inside this test
    drone = tmp_path / "drone.yaml"
    drone.write_text(
        "name: drone3\ntitle: A three-band drone camera\nunits: DN (uint8)\n"
        "groups:\n  rgb: [R, G, B]\nbands:\n"
        "  - {name: R, common_name: red, wavelength: 0.65, resolution: 0.05, mean: 120.0, std: 40.0}\n"
        "  - {name: G, common_name: green, wavelength: 0.55, resolution: 0.05, mean: 110.0, std: 40.0}\n"
        "  - {name: B, common_name: blue, wavelength: 0.47, resolution: 0.05, mean: 100.0, std: 40.0}\n"
    )
    assert run_app(["sensors", "drone3", "--add", str(drone), "--json"]) == 0
    (only,) = json.loads(capsys.readouterr().out)
    assert only["name"] == "drone3" and [b["wavelength_um"] for b in only["bands"]] == [0.65, 0.55, 0.47]
    assert run_app(["sensors", "drone3"]) == 0  # the table of one sensor's bands
    assert "A three-band drone camera" in " ".join(capsys.readouterr().out.split())


def test_sensors_refuses_an_unknown_name(capsys):
    assert run_app(["sensors", "sentinel9"]) == 2
    assert "sentinel9" in capsys.readouterr().err


def test_info_json_describes_a_real_raster_with_its_band_statistics(shared_data, capsys):
    assert run_app(["info", str(shared_data / S2HAND), "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["sensor"] == "sentinel2_l1c" and report["crs"] == "EPSG:4326"
    assert (report["width"], report["height"]) == (512, 512) and len(report["bands"]) == 13
    with rasterio.open(shared_data / S2HAND) as src:  # 512 pixels a side: the statistics read it whole
        b02 = src.read(2).astype(np.float64)
    band = report["bands"][1]
    assert band["name"] == "B02" and band["common_name"] == "blue"
    assert band["mean"] == pytest.approx(b02.mean(), rel=1e-9) and band["std"] == pytest.approx(
        b02.std(), rel=1e-6
    )
    assert (band["min"], band["max"]) == (b02.min(), b02.max())


def test_info_table_and_a_band_list_that_does_not_fit(shared_data, capsys):
    assert run_app(["info", str(shared_data / S2HAND)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "sensor sentinel2_l1c" in out and "size 512 x 512" in out and "coastal" in out
    assert run_app(["info", str(shared_data / S2HAND), "--bands", "B04,B03,B02"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "S2Hand.tif: --bands names 3 bands (B04,B03,B02) but the raster has 13" in err


@pytest.fixture(scope="module")
def ben_shards(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ben") / "shards"
    argv = [
        "prepare",
        "bigearthnet",
        str(shared_data / BEN),
        str(out),
        "--items-per-shard",
        "2",
        "--workers",
        "2",
    ]
    assert run_app(argv) == 0
    return out


def test_bigearthnet_shards_hold_every_patch_with_labels_and_true_band_statistics(shared_data, ben_shards):
    manifest = read_manifest(ben_shards)
    assert manifest["format_version"] == 2 and manifest["num_samples"] == 6 and len(manifest["shards"]) == 3
    samples = list(ShardDataset(ben_shards))
    # the centre 96 pixels of each 120-pixel patch (the largest square of whole 32-pixel tokens)
    assert len(samples) == 6 and samples[0].scene.shape == (1, 12, 96, 96)
    assert samples[0].partners["sentinel1"].shape == (1, 2, 96, 96)
    first = sorted(p for p in (shared_data / BEN).iterdir() if p.is_dir())[0]
    labels = json.loads(next(first.glob("*_labels_metadata.json")).read_text())["labels"]
    assert list(samples[0].labels) == labels
    with rasterio.open(next(first.glob("*_B02.tif"))) as src:
        want = src.read(1)[12:108, 12:108].astype(np.float32)
        np.testing.assert_array_equal(samples[0].scene.values[0, 1], want)
    stats = manifest["statistics"]["sentinel2_l2a"]
    b02 = np.concatenate([s.scene.values[0, 1].ravel() for s in samples]).astype(np.float64)
    assert stats["bands"][1] == "B02"
    assert stats["mean"][1] == pytest.approx(b02.mean(), rel=1e-9)
    assert stats["std"][1] == pytest.approx(b02.std(), rel=1e-6)


def test_streamed_samples_become_frames_and_split_across_workers(ben_shards):
    sample = next(iter(ShardDataset(ben_shards)))
    scene = sample.scene
    assert scene.attrs["sensor"] == "sentinel2_l2a" and str(scene["time"].values[0])[:10] == "2017-06-13"
    [frame] = scene_frames(scene)
    assert frame.groups[0].band_keys == ("red", "green", "blue") and frame.groups[0].pixels.shape == (
        3,
        96,
        96,
    )
    loader = DataLoader(ShardDataset(ben_shards), num_workers=2, batch_size=None)
    keys = [s.name for s in loader]
    assert sorted(keys) == sorted(s.name for s in ShardDataset(ben_shards))  # each sample once
    shuffled = [s.name for s in ShardDataset(ben_shards, shuffle=True, seed=3, buffer=4)]
    assert sorted(shuffled) == sorted(keys)


def test_resume_keeps_finished_shards_and_redoes_only_the_missing_one(shared_data, tmp_path, ben_shards):
    items = RECIPES["bigearthnet"].items(shared_data / BEN)
    out = tmp_path / "shards"
    prepare_shards(items, tile_loader("bigearthnet", 256), out, 2, progress=False)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("shard-*")}
    for name in ("shard-00000.tar", "shard-00001.tar", "shard-00002.tar"):  # serial == 2 worker processes
        assert before[name][1] == (ben_shards / name).read_bytes()
    (out / "shard-00001.tar").unlink()  # an interrupted run: shard 1 never finished ...
    (out / "shard-00001.json").unlink()
    atomic.hidden_path(out / "shard-00001.tar", "partial").write_bytes(b"half a shard")  # ... and its partial
    (out / "manifest.json").unlink()
    prepare_shards(items, tile_loader("bigearthnet", 256), out, 2, progress=False)
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("shard-*")}
    for name in ("shard-00000.tar", "shard-00002.tar", "shard-00000.json"):
        assert after[name] == before[name]  # untouched
    assert after["shard-00001.tar"][1] == before["shard-00001.tar"][1]  # redone, byte for byte
    assert not list(out.glob(".*.partial")) and read_manifest(out)["num_samples"] == 6


def test_sen1floods11_and_timeseries_recipes(shared_data, tmp_path):
    assert (
        run_app(
            [
                "prepare",
                "sen1floods11",
                str(shared_data / "sen1floods11"),
                str(tmp_path / "s"),
                "--tile",
                "256",
            ]
        )
        == 0
    )
    samples = list(ShardDataset(tmp_path / "s"))
    assert len(samples) == 4 and samples[0].partners["sentinel1"].shape == (1, 2, 256, 256)
    assert samples[0].mask.dtype == np.int64 and set(np.unique(samples[0].mask).tolist()) <= {-1, 0, 1}
    assert samples[0].classes == ("land", "water") and [s.split for s in samples] == ["train", "val"] * 2
    argv = ["prepare", "timeseries", str(shared_data / "timeseries/landsat_pucallpa"), str(tmp_path / "t"),
            "--sensor", "landsat5_tm", "--bands", "B5,B4,B3,B2", "--tile", "128"]  # fmt: skip
    assert run_app(argv) == 0
    sample = next(iter(ShardDataset(tmp_path / "t")))
    assert sample.scene.shape == (8, 4, 128, 128)
    assert str(sample.scene["time"].values[-1])[:10] == "2020-01-01"


def test_captions_recipe_keeps_the_captions(shared_data, tmp_path):
    assert (
        run_app(
            [
                "prepare",
                "captions",
                str(shared_data / "text/rsicd_mini"),
                str(tmp_path / "c"),
                "--tile",
                "128",
            ]
        )
        == 0
    )
    sample = next(iter(ShardDataset(tmp_path / "c")))
    assert sample.scene.shape == (1, 3, 128, 128) and "airport" in sample.captions[0]


def test_shard_folder_from_another_version_is_refused(ben_shards, tmp_path, shared_data, capsys):
    old = tmp_path / "old"
    old.mkdir()
    manifest = read_manifest(ben_shards) | {"format_version": 0}
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        InputError, match=r"old: shard folder of format 'rsneo-shards' version 0; expected .* version 2"
    ):
        ShardDataset(old)
    before = sorted(p.name for p in old.iterdir())
    assert run_app(["prepare", "bigearthnet", str(shared_data / BEN), str(old)]) == 2
    assert sorted(p.name for p in old.iterdir()) == before  # nothing written
    assert "version 0" in capsys.readouterr().err


def test_bad_input_in_prepare_leaves_no_output(shared_data, tmp_path):
    argv = ["prepare", "timeseries", str(shared_data / "timeseries/landsat_pucallpa"), str(tmp_path / "out")]
    assert run_app(argv) == 2  # ambiguous sensor: no --sensor
    assert not (tmp_path / "out").exists()
    assert run_app(["prepare", "nonsense", str(tmp_path), str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_truncated_shard_is_named_when_read(ben_shards, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in ben_shards.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    tar = copy / "shard-00000.tar"
    tar.write_bytes(tar.read_bytes()[:5000])
    with pytest.raises(InputError, match=r"shard-00000.tar: shard is truncated or corrupt"):
        list(ShardDataset(copy))


def _copy(folder: Path, to: Path) -> Path:
    to.mkdir()
    for p in folder.iterdir():
        (to / p.name).write_bytes(p.read_bytes())
    return to


_loaded: list[int] = []


def _interrupt_after_one(item):
    """A recipe loader that is stopped (as by Ctrl-C) after its first two items, i.e. one finished shard."""
    _loaded.append(1)
    if len(_loaded) > 2:
        raise KeyboardInterrupt
    return load_tiles("bigearthnet", 256, item)


def test_prepare_refuses_bad_output_folders_before_work(shared_data, ben_shards, tmp_path, capsys):
    src = str(shared_data / BEN)
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = {
        str(afile): "afile: expected a folder to write into, found a file",
        str(afile / "sub"): "afile/sub: expected a folder to write into, but .*afile is a file",
        "/proc/rsneo-out": "rsneo-out: expected a folder rsneo can write to; /proc refuses",
    }
    for out, expected in cases.items():
        assert run_app(["prepare", "bigearthnet", src, out, "--items-per-shard", "2"]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert re.search(expected, err) and "Traceback" not in err, err
    other_tile = _copy(ben_shards, tmp_path / "other")
    argv = ["prepare", "bigearthnet", src, str(other_tile), "--items-per-shard", "2", "--tile", "64"]
    assert run_app(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "made by recipe bigearthnet with --tile 256; expected bigearthnet with --tile 64" in err
    unfinished = tmp_path / "unfinished"  # a run killed before its manifest: the tile size is still known
    with pytest.raises(KeyboardInterrupt):
        prepare_shards(
            RECIPES["bigearthnet"].items(shared_data / BEN),
            _interrupt_after_one,
            unfinished,
            2,
            info={"recipe": "bigearthnet", "source": src, "tile": 256},
            progress=False,
        )
    assert not (unfinished / "manifest.json").exists() and list(unfinished.glob("shard-*.tar"))
    argv = ["prepare", "bigearthnet", src, str(unfinished), "--items-per-shard", "2", "--tile", "64"]
    assert run_app(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "unfinished run made with" in err and '"tile": 256' in err and '"tile": 64' in err, err
    damaged = _copy(ben_shards, tmp_path / "damaged")
    (damaged / "shard-00001.json").write_text('{"shard": "shard-000')
    assert run_app(["prepare", "bigearthnet", src, str(damaged), "--items-per-shard", "2"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "shard-00001.json: a damaged record of an earlier run (not valid JSON)" in err
    assert sorted(p.name for p in damaged.iterdir()) == sorted(p.name for p in ben_shards.iterdir())


def test_train_that_stops_on_corrupt_shards_leaves_nothing(ben_shards, tmp_path, shared_data):
    shards = _copy(ben_shards, tmp_path / "shards")
    for tar in shards.glob("*.tar"):
        tar.write_bytes(tar.read_bytes()[:5000])
    out = tmp_path / "run"
    argv = ["train", "experiment=smoke", "data=shards", f"data.path={shards}", f"data_root={shared_data}"]
    assert run_app([*argv, f"out_dir={out}", "trainer.progress_bar=false"]) == 2
    assert not out.exists()
    out.mkdir()
    (out / "mine.txt").write_text("kept")
    assert run_app([*argv, f"out_dir={out}", "trainer.progress_bar=false"]) == 2
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_prepare_labelled_change_pairs_and_masks(shared_data, tmp_path, capsys):
    levir, out = str(shared_data / "levir_cd"), tmp_path / "levir"
    argv = ["prepare", "change", levir, str(out), "--tile", "128", "--pixel-size", "0.5", "--split", "test"]
    assert run_app(argv) == 0
    samples = list(ShardDataset(out))
    assert len(samples) == 5 * 4 and {s.split for s in samples} == {"test"}  # 5 test pairs, 4 tiles each
    assert samples[0].scene.shape == (2, 3, 128, 128) and samples[0].classes == ("no change", "change")
    assert samples[0].scene.attrs["transform"][0] == 0.5
    label = str(shared_data / "sen1floods11/Labels/Spain_7370579_LabelHand.tif")
    masks = ["prepare", "segmentation", str(shared_data / S2HAND), str(tmp_path / "seg"), "--masks", label,
             "--tile", "256"]  # fmt: skip
    assert run_app([*masks, "--classes", "0=land,1=water,ignore=-1"]) == 0
    chips = list(ShardDataset(tmp_path / "seg"))
    assert len(chips) == 4 and chips[0].classes == ("land", "water") and chips[3].origin == (256, 256)
    capsys.readouterr()
    masks[3] = str(tmp_path / "seg2")
    assert run_app([*masks, "--classes", "0=land,1=water"]) == 2  # -1 is not in the table
    assert "LabelHand.tif: holds mask values [-1] outside the class table" in capsys.readouterr().err
    assert run_app(masks) == 2  # no class table
    assert "--classes" in capsys.readouterr().err and not (tmp_path / "seg2").exists()


def test_prepare_refuses_a_change_folder_with_a_missing_partner_before_writing(shared_data, tmp_path, capsys):
    root = tmp_path / "cd"
    for folder in ("A", "B", "label"):
        shutil.copytree(shared_data / "levir_cd" / folder, root / folder)
    (root / "label" / "test_7_0256_0512.png").unlink()
    assert run_app(["prepare", "change", str(root), str(tmp_path / "out")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "A/test_7_0256_0512.png: has no partner in" in err and not (tmp_path / "out").exists()
    assert (
        run_app(["prepare", "change", str(shared_data / "levir_cd"), str(tmp_path / "out"), "--split", "val"])
        == 2
    )
    assert "split 'val' is empty" in capsys.readouterr().err and not (tmp_path / "out").exists()
