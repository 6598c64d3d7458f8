"""`rsneo train` and `rsneo export` (rsneo.cli.train): the composed config on --show, an exported folder with
the command's report, and overrides or destinations that cannot work exit 2 naming them.

Training runs end to end in tests/train/test_run.py (the smoke experiment through this command)."""

from __future__ import annotations

from pathlib import Path

import yaml

from rsneo.cli import run_app
from rsneo.cli.train import CONFIG_DIR, config_groups


def flat(text: str) -> str:
    return " ".join(text.split())


def test_show_prints_the_composed_config_with_the_overrides_applied(capsys):
    assert run_app(["train", "--show", "experiment=smoke", "trainer.max_steps=9", "stage.lr=0.002"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["name"] == "smoke" and config["model"]["preset"] == "tiny"
    assert config["trainer"]["max_steps"] == 9 and config["stage"]["lr"] == 0.002
    assert config["stage"]["warmup_steps"] == 2  # from the experiment, not the stage's default


def test_overrides_hydra_cannot_apply_exit_2_naming_them(capsys):
    assert run_app(["train", "--show", "experiment=nosuch"]) == 2
    err = flat(capsys.readouterr().err)
    assert (
        "cannot apply overrides ['experiment=nosuch']" in err and "Could not find 'experiment/nosuch'" in err
    )
    assert run_app(["train", "--show", "trainer.nosuch=3"]) == 2
    assert "Could not override 'trainer.nosuch'" in flat(capsys.readouterr().err)


def test_help_lists_every_shipped_config_group_and_option(capsys):
    groups = config_groups()
    assert "learn_experiment" not in groups  # `rsneo learn --config`'s, not a training group
    for group in sorted(p for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name != "learn_experiment"):
        options = sorted(f.stem for f in group.glob("*.yaml"))
        assert f"{group.name}=" + "|".join(options) in groups
    assert "experiment=" in groups and "smoke" in groups
    assert run_app(["train", "--help"]) == 0
    assert "experiment=" in flat(capsys.readouterr().out).replace(" ", "")


def test_export_writes_the_folder_and_says_so(tiny_checkpoint, tmp_path, capsys):
    folder = tmp_path / "model"
    assert run_app(["export", str(tiny_checkpoint), str(folder)]) == 0
    assert flat(capsys.readouterr().out) == f"exported {tiny_checkpoint} to {folder.resolve()}"
    assert (folder / "config.json").is_file() and (folder / "heads.safetensors").is_file()
    assert run_app(["export", str(tiny_checkpoint), str(folder)]) == 2  # now not empty: --overwrite needed
    assert "(use --overwrite)" in flat(capsys.readouterr().err)


def test_export_refuses_a_file_or_unwritable_destination(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for dest, expected in {
        afile: "afile: expected a folder to write into, found a file",
        Path("/proc/rsneo-model"): "expected a folder rsneo can write to; /proc refuses",
    }.items():
        assert run_app(["export", str(afile), str(dest)]) == 2
        assert expected in " ".join(capsys.readouterr().err.split())
