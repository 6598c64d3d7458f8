"""Fixtures for the training tests: a tokenizer trained offline on the corpus texts, a tiny model, real
samples."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from rsneo.model.positions import ImageTokens


@pytest.fixture(scope="session")
def tokenizer(shared_data: Path):
    from rsneo.train.run import build_tokenizer

    return build_tokenizer(None, None, shared_data, 512)


@pytest.fixture(scope="session")
def image_tokens(tokenizer) -> ImageTokens:
    from rsneo.model.tokenizer import image_token_ids

    return ImageTokens.of(image_token_ids(tokenizer))


@pytest.fixture
def tiny_model(tokenizer):
    from dataclasses import asdict

    from rsneo.train.run import build_model
    from rsneo.train.schema import ModelConfig

    torch.manual_seed(0)
    return build_model(asdict(ModelConfig(preset="tiny")), tokenizer)


@pytest.fixture(scope="session")
def flood_samples(shared_data: Path, tokenizer, image_tokens):
    """Sen1Floods11 tiles of 64 pixels (S2 groups + S1 in one frame, a water sentence, the water mask)."""
    from rsneo.data.documents import DocumentBuilder
    from rsneo.train.corpus import sen1floods11

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sen1floods11(shared_data, lambda: DocumentBuilder(tokenizer, image_tokens), 64)


S2_CHIP = ("sen1floods11", "S2", "Spain_7370579_S2Hand.tif")


@pytest.fixture(scope="session")
def flood_points(water_label_points) -> Path:
    """12 points per class drawn from the hand-labelled water mask, saved in web mercator (EPSG:3857)."""
    return water_label_points(12, seed=0, name="points.gpkg", buffer_px=1.5, to_crs=3857)


@pytest.fixture(scope="session")
def flood_windows(tiny_system, shared_data, flood_points):
    """The flood points burnt onto the Sen1Floods11 chip and the tiny model's labelled windows of them."""
    from rsneo.io.labels import read_labels
    from rsneo.train.learn_pixels import labelled_windows, prepare_rasters

    labels = read_labels(flood_points, "cover")
    raster = prepare_rasters([shared_data.joinpath(*S2_CHIP)], labels)[0]
    return labels, labelled_windows(tiny_system, [raster], 256)
