"""The Hydra config tree: every group composes, overrides apply, bad ones name what was wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from rsneo.errors import InputError
from rsneo.model.config import PRESETS
from rsneo.train.config import CONFIG_DIR, load_config, resolve_data_root


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def test_every_model_preset_has_a_config_and_names_a_real_preset():
    assert options("model") == sorted(["tiny", "demo", "neo-2.2b", "neo-9b"])
    for name in options("model"):
        assert load_config([f"model={name}"]).model.preset in PRESETS


@pytest.mark.parametrize("group", ["data", "stage", "trainer", "objectives"])
def test_every_option_of_a_group_composes(group):
    for name in options(group):
        cfg = load_config([f"{group}={name}"])
        assert cfg[group] is not None


def test_stage_one_trains_the_prebuffer_roles_and_later_stages_train_all():
    assert list(load_config(["stage=stage1"]).stage.trainable) == ["vision", "prebuffer", "native_positions"]
    assert load_config(["stage=stage2"]).stage.trainable == "all"
    assert load_config(["stage=stage3"]).stage.trainable == "all"


def test_scale_configs_compose_from_gpu_defaults():
    fsdp = load_config(["trainer=fsdp", "model=neo-9b"])
    assert (fsdp.trainer.strategy, fsdp.trainer.precision) == ("fsdp", "bf16-mixed")
    assert fsdp.model.activation_checkpointing is True
    multi = load_config(["trainer=multinode", "trainer.num_nodes=4"])
    assert (multi.trainer.strategy, multi.trainer.num_nodes) == ("fsdp", 4)
    assert load_config(["trainer=ddp"]).trainer.strategy == "ddp"


def test_smoke_experiment_and_command_line_overrides():
    cfg = load_config(["experiment=smoke", "trainer.max_steps=3", "data.batch_size=1", "out_dir=/tmp/x"])
    assert (cfg.name, cfg.model.preset, cfg.trainer.accelerator) == ("smoke", "tiny", "cpu")
    assert (cfg.trainer.max_steps, cfg.data.batch_size, cfg.out_dir) == (3, 1, "/tmp/x")
    assert cfg.objectives.segmentation.weight > 0 and cfg.objectives.masked_bands.weight > 0


def test_data_root_defaults_to_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("RSNEO_DATA", str(tmp_path))
    assert load_config([]).data_root == str(tmp_path)


def test_unknown_group_option_is_an_input_error_naming_it():
    with pytest.raises(InputError, match=r"trainer=tpu.*Could not find 'trainer/tpu'"):
        load_config(["trainer=tpu"])


def test_data_root_is_found_beside_the_repository_or_named_when_missing(shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # ../shared/data is not beside tmp_path, but it is beside the repository
    assert resolve_data_root("../shared/data") == shared_data.resolve()
    with pytest.raises(InputError, match="data_root: expected a folder with the sample data"):
        resolve_data_root(str(tmp_path / "nowhere"))
    assert Path(resolve_data_root(str(shared_data))) == shared_data.resolve()
