"""Compose the training config from the Hydra tree shipped inside the package (`rsneo/configs`).

The Hydra compose API is used instead of `@hydra.main` so that `rsneo train` stays a Typer command,
tests can build configs in-process, and Hydra never changes the working directory. The tree is merged into the
typed schema of `rsneo.train.schema`, so unknown keys and wrong types fail here, before anything runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rsneo.errors import InputError
from rsneo.train.schema import TrainConfig, register

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
REPO_DIR = Path(__file__).resolve().parents[2]


def load_config(overrides: list[str] | tuple[str, ...] = (), config_name: str = "train") -> DictConfig:
    """The composed config for `overrides` such as `["experiment=smoke", "trainer.max_steps=5"]`, resolved;
    `train` is checked against its schema (every key known, every value of its type, none missing)."""
    register()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
        OmegaConf.resolve(cfg)
        if config_name == "train":  # `rsneo learn`'s tree (learn.yaml) has no schema
            # `+key=value` opens the schema's nodes to new keys; a merge into a fresh schema closes them again
            OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.to_container(cfg))
    except (HydraException, OmegaConfBaseException) as exc:
        raise InputError(
            f"training config: cannot apply overrides {list(overrides)}: {config_error(exc)}. "
            f"Config groups and files are in {CONFIG_DIR}"
        ) from exc
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise InputError(
            f"training config: no value for {missing}; set them in a config file or as KEY=VALUE"
        )
    return cfg


def config_error(exc: BaseException) -> str:
    """Hydra's message and the OmegaConf error under it (which names the key, `full_key`) on one line; without
    the schema's class names, the search path and Hydra's advice to append with `+` (the schema refuses
    unknown keys either way)."""
    lines: list[str] = []
    cause: BaseException | None = exc
    while cause is not None:
        for line in (line.strip() for line in str(cause).strip().splitlines()):
            if line.startswith("Config search path"):
                break
            skip = ("object_type=", "reference_type=", "To append to your config")
            if line and not line.startswith(skip) and line not in lines:
                lines.append(line)
        cause = cause.__cause__
    return " ".join(line if line.endswith((".", ":")) else line + ";" for line in lines).rstrip(";")


def run_config(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """The run's config as plain types (as checkpoints store it), every key of the schema filled: a composed
    config as is, a hand-made dict (tests, notebooks) merged into the schema's defaults and checked the same
    way."""
    try:
        typed = OmegaConf.merge(OmegaConf.structured(TrainConfig), cfg)
        plain = OmegaConf.to_container(typed, resolve=True, throw_on_missing=True, enum_to_str=True)
    except OmegaConfBaseException as exc:
        raise InputError(f"training config: {config_error(exc)}") from exc
    return plain  # type: ignore[return-value]


def resolve_data_root(value: str) -> Path:
    """The sample data folder: `value` as given, or relative to the working directory, or beside the
    repository."""
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, REPO_DIR / path]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    raise InputError(
        f"data_root: expected a folder with the sample data (sen1floods11/, bigearthnet/, ...), "
        f"found none at {', '.join(str(c) for c in candidates)}; set data_root=PATH or RSNEO_DATA"
    )
