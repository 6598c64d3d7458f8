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
    assert list(load_config(["stage=stage2"]).stage.trainable) == ["all"]
    assert list(load_config(["stage=stage3"]).stage.trainable) == ["all"]


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


def test_every_experiment_composes_with_every_key_typed_and_set():
    from rsneo.train.config import run_config

    assert options("experiment") == [
        "demo", "finetune_change", "finetune_levircd", "finetune_oscd", "finetune_segment", "smoke",
    ]  # fmt: skip
    for name in options("experiment"):
        plain = run_config(load_config([f"experiment={name}"]))  # raises on a missing value
        assert plain["name"] == name and isinstance(plain["trainer"]["max_steps"], int)
        assert plain["model"]["attn_backend"] == "auto" and plain["data"]["band_groups"] == "fold"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("trainer.max_stepz=5", "Key 'max_stepz' not in 'TrainerConfig'; full_key: trainer.max_stepz"),
        ("+model.atn_backend=flex", "Key 'atn_backend' not in 'ModelConfig'; full_key: model.atn_backend"),
        ("trainer.max_steps=abc", "could not be converted to Integer; full_key: trainer.max_steps"),
        ("model.attn_backend=flax", "one of [auto, sdpa, flex, flash]; full_key: model.attn_backend"),
        ("data.band_groups=bands", "'bands', expected one of [sensor, fold]; full_key: data.band_groups"),
        ("data.tile=???", "no value for ['data.tile']"),
        # a Flex bucket ladder that cannot hold the rows the run may pack (rsneo.model.flex)
        ("model.max_tokens=70000", "longest bucket holds 65536 tokens per row, but max_tokens is 70000"),
        ("model.flex_lengths=[100,4096]", "lengths must be multiples of 128 tokens, got [100]"),
        ("model.flex_rows=[4,2]", "rows must be positive and strictly increasing, got (4, 2)"),
    ],
)  # fmt: skip
def test_rsneo_train_refuses_unknown_keys_and_wrong_types_at_start_with_exit_2(
    override, named, tmp_path, capsys
):
    from rsneo.cli import run_app

    out = tmp_path / "run"
    assert run_app(["train", "experiment=smoke", override, f"out_dir={out}"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert named in err and "Traceback" not in err, err
    assert not out.exists()  # refused before anything ran


def test_a_misspelt_key_inside_a_users_experiment_file_is_refused_by_name(tmp_path, capsys):
    from rsneo.cli import run_app

    (tmp_path / "experiment").mkdir()
    mine = tmp_path / "experiment" / "mine.yaml"
    mine.write_text("# @package _global_\ntrainer:\n  max_steps: 5\n  log_every_n_steps: 1\n")
    search = f"hydra.searchpath=[file://{tmp_path}]"
    assert load_config([search, "experiment=mine"]).trainer.max_steps == 5  # found outside the package
    mine.write_text(mine.read_text().replace("log_every", "log_evry"))
    assert run_app(["train", search, "experiment=mine", "--show"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "In 'experiment/mine'" in err and "full_key: trainer.log_evry_n_steps" in err, err


def test_a_hand_made_run_config_gets_the_schema_defaults_and_its_checks():
    from rsneo.train.config import run_config

    composed = run_config(load_config([]))
    plain = run_config({**composed, "trainer": {**composed["trainer"], "threads": 1}})
    assert plain == {**composed, "trainer": {**composed["trainer"], "threads": 1}}
    del composed["trainer"]["val_batches"], composed["data"]["shuffle_buffer"]
    plain = run_config(composed)  # keys a dict leaves out take the schema's defaults
    assert (plain["trainer"]["val_batches"], plain["data"]["shuffle_buffer"]) == (2, 64)
    with pytest.raises(
        InputError, match=r"Key 'max_stepz' not in 'TrainerConfig'; full_key: trainer.max_stepz"
    ):
        run_config({**composed, "trainer": {"max_stepz": 3}})


def test_attn_backend_from_the_command_line_reaches_the_models_forward(tokenizer, monkeypatch):
    import torch

    from rsneo.model.backbone import RSNeoBackbone
    from rsneo.train.config import run_config
    from rsneo.train.run import build_model

    model = build_model(run_config(load_config(["model.attn_backend=sdpa"]))["model"], tokenizer)
    assert model.config.attn_backend == "sdpa"
    assert "attn_backend" not in model.config.to_dict()  # a choice of the run, not saved with the weights
    seen: list[str] = []
    original = RSNeoBackbone.attention_mask

    def spy(self, inputs, backend, *args):
        seen.append(backend)
        return original(self, inputs, backend, *args)

    monkeypatch.setattr(RSNeoBackbone, "attention_mask", spy)
    model(input_ids=torch.tensor([[1, 2, 3]]))
    model(input_ids=torch.tensor([[1, 2, 3]]), attn_backend="auto")  # a call's own choice wins
    assert seen == ["sdpa", "auto"]
    assert build_model(run_config(load_config([]))["model"], tokenizer).config.attn_backend == "auto"


def test_attn_backend_is_set_on_a_model_started_from_a_folder(tmp_path, tiny_model, tokenizer):
    from rsneo.train.config import run_config
    from rsneo.train.run import build_model

    tiny_model.save_pretrained(tmp_path)
    model_cfg = run_config(load_config([f"model.init_from={tmp_path}", "model.attn_backend=flex"]))["model"]
    assert build_model(model_cfg, tokenizer).config.attn_backend == "flex"


def test_model_overrides_name_unknown_fields(tokenizer):
    from rsneo.train.config import run_config
    from rsneo.train.run import build_model

    model_cfg = run_config(load_config(["+model.overrides.num_layerz=2"]))["model"]
    with pytest.raises(InputError, match=r"model.overrides: \['num_layerz'\] are not RSNeoConfig fields"):
        build_model(model_cfg, tokenizer)
