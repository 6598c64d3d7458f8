"""Golden NEO fixtures: the tiny model loaded with NEO's weights, and the two golden cases
(built by `rsneo.model.golden`, which the GPU check uses too)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rsneo.model import RSNeoConfig, RSNeoForCausalLM
from rsneo.model import golden as golden_files
from rsneo.model.golden import golden_inputs  # noqa: F401  (the model tests import it from here)
from rsneo.model.golden import rgb_image as rgb  # noqa: F401  (likewise)


@pytest.fixture(scope="session")
def golden_config(golden_dir: Path) -> RSNeoConfig:
    return golden_files.golden_config(golden_dir)


@pytest.fixture(scope="session")
def golden_cases(golden_dir: Path) -> dict[str, torch.Tensor]:
    return golden_files.golden_cases(golden_dir)


@pytest.fixture()
def golden_model(golden_dir: Path, golden_config: RSNeoConfig) -> RSNeoForCausalLM:
    torch.manual_seed(0)
    return golden_files.golden_model(golden_dir, golden_config)
