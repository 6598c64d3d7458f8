"""Shared fixtures: where the real sample imagery and the NEO golden vectors live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RSNEO_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"real sample data not found at {path} (set RSNEO_SHARED)")
    return path


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    path = SHARED / "golden"
    if not path.is_dir():
        pytest.skip(f"NEO golden vectors not found at {path} (set RSNEO_SHARED)")
    return path


TOKENIZER_TEXTS = [
    "a satellite image of water, land, open water, dry land, forest, vegetation, built-up areas, bare soil.",
    "What changed between these images? Describe the changes. How much water is there?",
] * 4


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random rsneo system saved as a model folder (no weights can be downloaded in tests)."""
    from rsneo.heads.system import random_system

    folder = tmp_path_factory.mktemp("tiny_model")
    random_system(folder, texts=TOKENIZER_TEXTS)
    return folder


@pytest.fixture(scope="session")
def tiny_system(tiny_model_dir):
    from rsneo.heads.system import load_system

    return load_system(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of a tiny random training module with both heads, holding what `rsneo train` saves for
    the model (`state_dict` and the module's `rsneo` record), without running a trainer."""
    import torch
    from omegaconf import OmegaConf

    from rsneo.heads.system import random_system
    from rsneo.train.config import load_config
    from rsneo.train.module import RSNeoTraining

    system = random_system(texts=TOKENIZER_TEXTS, seed=1)
    cfg = OmegaConf.to_container(load_config(["experiment=smoke"]), resolve=True)
    module = RSNeoTraining(system.model, cfg, system.tokenizer, system.segmentation, system.change)
    checkpoint = {"state_dict": module.state_dict(), "global_step": 0}
    module.on_save_checkpoint(checkpoint)
    path = tmp_path_factory.mktemp("checkpoint") / "last.ckpt"
    torch.save(checkpoint, path)
    return path
