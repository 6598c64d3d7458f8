"""NEO's golden vectors as rsneo objects: the tiny NEO config, its weights and the two reference cases.

The model tests and the GPU check (`benchmarks/gpu_check.py`) compare against the same cases, built the same
way here. The files are not part of the package (the tests find them in `../shared/golden`), so every
function takes the folder that holds them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from rsneo.model.causal_lm import RSNeoForCausalLM
from rsneo.model.config import RSNeoConfig
from rsneo.model.convert import neo_state_dict_to_rsneo
from rsneo.model.inputs import ImageInput, ModelInputs
from rsneo.model.positions import pack_documents

CASES = ("single", "packed")
RGB_WAVELENGTHS_UM = (0.665, 0.56, 0.49)  # the golden images are RGB, as NEO's
RGB_KEYS = ("red", "green", "blue")
MAX_IMAGES = 8  # a case holds images image0, image1, ... up to this many


def rgb_image(pixels: Tensor, time: float | None = None) -> ImageInput:
    """(3, H, W) RGB pixels as an `ImageInput`."""
    return ImageInput(pixels, torch.tensor(RGB_WAVELENGTHS_UM), RGB_KEYS, time)


def golden_config(folder: Path) -> RSNeoConfig:
    """The tiny NEO configuration (`neo_tiny_config.json`) as an `RSNeoConfig`."""
    return RSNeoConfig.from_neo_json(json.loads((Path(folder) / "neo_tiny_config.json").read_text()))


def golden_cases(folder: Path) -> dict[str, Tensor]:
    """The reference cases: `<case>.input_ids`, `.seq_boundaries`, `.image<i>`, `.logits`, `.vision_embeds`
    per case."""
    return load_file(str(Path(folder) / "neo_tiny_cases.safetensors"))


def golden_state(folder: Path, config: RSNeoConfig) -> dict[str, Tensor]:
    """NEO's tiny weights converted to rsneo's parameter names."""
    return neo_state_dict_to_rsneo(load_file(str(Path(folder) / "neo_tiny_weights.safetensors")), config)


def golden_model(folder: Path, config: RSNeoConfig | None = None) -> RSNeoForCausalLM:
    """The tiny model with NEO's weights (fp32, eval mode, on the CPU)."""
    config = config or golden_config(folder)
    model = RSNeoForCausalLM(config)
    model.load_state_dict(golden_state(folder, config), strict=True)
    return model.eval()


def golden_inputs(
    cases: dict[str, Tensor], case: str, config: RSNeoConfig, dtype: torch.dtype | None = None
) -> ModelInputs:
    """The golden case as one packed row: documents split at `seq_boundaries`, images in order (cast to
    `dtype` when given, for a half-precision model)."""
    ids = cases[f"{case}.input_ids"]
    bounds = cases[f"{case}.seq_boundaries"].tolist()
    images = [cases[f"{case}.image{i}"] for i in range(MAX_IMAGES) if f"{case}.image{i}" in cases]
    if dtype is not None:
        images = [image.to(dtype) for image in images]
    docs, used = [], 0
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        doc = ids[start:end]
        n = int((doc == config.img_start_token_id).sum())
        docs.append((doc, [rgb_image(image) for image in images[used : used + n]]))
        used += n
    return pack_documents([docs], config)
