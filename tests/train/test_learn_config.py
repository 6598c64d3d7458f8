"""`rsneo.train.learn_config`: the typed schema is the one home of `rsneo learn`'s defaults."""

from __future__ import annotations

from dataclasses import asdict, fields

import pytest
import typer.main
from omegaconf import OmegaConf

from rsneo.cli import run_app
from rsneo.cli.app import app
from rsneo.cli.learn import OPTION_KEYS, learn_config
from rsneo.train.config import CONFIG_DIR
from rsneo.train.learn_config import LearnConfig, LearnSettings


def test_the_composed_config_is_the_schemas_defaults_and_learn_yaml_sets_none():
    cfg = learn_config(None, [])
    assert OmegaConf.to_object(cfg) == LearnConfig(data_root=cfg.data_root)  # data_root: its env default
    root = OmegaConf.load(CONFIG_DIR / "learn.yaml")
    assert set(root) == {"defaults"}  # no value of its own: nothing to drift from the schema
    quick = learn_config("quick", ["settings.seed=2"])
    assert quick.settings.steps < LearnSettings().steps and quick.settings.seed == 2


def test_the_commands_options_default_to_the_schema():
    command = typer.main.get_command(app).commands["learn"]
    defaults = {p.name: p.default for p in command.params}
    schema = asdict(LearnConfig()) | {f"settings.{k}": v for k, v in asdict(LearnSettings()).items()}
    for option, key in OPTION_KEYS.items():
        if option != "bands":  # typed as text (B5,B4,...), a list in the schema; both default to none
            assert defaults[option] == schema[key], option
    assert set(OPTION_KEYS.values()) <= set(schema)
    assert {f.name for f in fields(LearnSettings)} >= {
        k.split(".")[1] for k in OPTION_KEYS.values() if "." in k
    }


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "settings.steps=abc",
            "Value 'abc' of type 'str' could not be converted to Integer; full_key: settings.steps",
        ),
        ("settings.bogus=1", "Key 'bogus' not in 'LearnSettings'"),
        ("labels=[a,b]", "full_key: labels"),
    ],
)
def test_a_wrong_key_or_type_is_refused_naming_it(override, message, capsys):
    argv = ["learn", "x.tif", "--labels", "a.gpkg", "--class-field", "c", "--out", "out", override]
    assert run_app(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and "Traceback" not in err


def test_missing_and_unknown_runs_are_named(capsys):
    assert run_app(["learn", "--config", "no_such_experiment"]) == 2
    assert "no such learn experiment" in capsys.readouterr().err
    assert run_app(["learn", "--config", "sen1floods11_s2"]) == 2  # labels, class_field, out still missing
    assert "missing labels, class_field, out" in " ".join(capsys.readouterr().err.split())
