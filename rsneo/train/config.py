"""Compose the training config from the Hydra tree shipped inside the package (`rsneo/configs`).

The Hydra compose API is used instead of `@hydra.main` so that `rsneo train` stays a Typer command,
tests can build configs in-process, and Hydra never changes the working directory.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rsneo.errors import InputError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
REPO_DIR = Path(__file__).resolve().parents[2]


def load_config(overrides: list[str] | tuple[str, ...] = (), config_name: str = "train") -> DictConfig:
    """The composed config for `overrides` such as `["experiment=smoke", "trainer.max_steps=5"]`, resolved."""
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(
            f"training config: cannot apply overrides {list(overrides)}: {first}. "
            f"Config groups and files are in {CONFIG_DIR}"
        ) from exc
    return cfg


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
