"""Golden NEO fixtures: the tiny model loaded with NEO's weights, and the two golden cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rsneo.model import ImageInput, ModelInputs, RSNeoConfig, RSNeoForCausalLM, pack_documents
from rsneo.model.convert import neo_state_dict_to_rsneo

RGB_UM = torch.tensor([0.665, 0.56, 0.49])
RGB_KEYS = ("red", "green", "blue")


def rgb(pixels: torch.Tensor, time: float | None = None) -> ImageInput:
    return ImageInput(pixels, RGB_UM.clone(), RGB_KEYS, time)


@pytest.fixture(scope="session")
def golden_config(golden_dir: Path) -> RSNeoConfig:
    return RSNeoConfig.from_neo_json(json.loads((golden_dir / "neo_tiny_config.json").read_text()))


@pytest.fixture(scope="session")
def golden_cases(golden_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(golden_dir / "neo_tiny_cases.safetensors"))


@pytest.fixture()
def golden_model(golden_dir: Path, golden_config: RSNeoConfig) -> RSNeoForCausalLM:
    torch.manual_seed(0)
    model = RSNeoForCausalLM(golden_config)
    state = neo_state_dict_to_rsneo(
        load_file(str(golden_dir / "neo_tiny_weights.safetensors")), golden_config
    )
    model.load_state_dict(state, strict=True)
    return model.eval()


def golden_inputs(cases: dict[str, torch.Tensor], case: str, config: RSNeoConfig) -> ModelInputs:
    """The golden case as one packed row: documents split at `seq_boundaries`, images in order."""
    ids = cases[f"{case}.input_ids"]
    bounds = cases[f"{case}.seq_boundaries"].tolist()
    images = [cases[f"{case}.image{i}"] for i in range(8) if f"{case}.image{i}" in cases]
    docs, used = [], 0
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        doc = ids[start:end]
        n = int((doc == config.img_start_token_id).sum())
        docs.append((doc, [rgb(im) for im in images[used : used + n]]))
        used += n
    return pack_documents([docs], config)
