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


@pytest.fixture(scope="session")
def water_label_points(shared_data, tmp_path_factory):
    """Makes labels as a user draws them for `rsneo learn`: `count` random pixels per class ("Flood water",
    "dry ground", field `cover`) of the hand-labelled Sen1Floods11 water mask, as points (or squares of
    `buffer_px` pixels around them), saved to `name` in the raster's CRS or in `to_crs`."""
    import geopandas as gpd
    import numpy as np
    import rasterio
    from shapely.geometry import Point

    def make(count: int, seed: int, name: str, buffer_px: float = 0.0, to_crs: int | None = None) -> Path:
        with rasterio.open(shared_data / "sen1floods11" / "Labels" / "Spain_7370579_LabelHand.tif") as src:
            label, transform, crs = src.read(1), src.transform, src.crs
        rng = np.random.default_rng(seed)
        records = []
        for value, cover in ((1, "Flood water"), (0, "dry ground")):
            rows, cols = np.nonzero(label == value)
            for i in rng.choice(len(rows), count, replace=False):
                point = Point(transform @ (cols[i] + 0.5, rows[i] + 0.5))
                records.append(
                    {
                        "cover": cover,
                        "geometry": point.buffer(abs(transform.a) * buffer_px) if buffer_px else point,
                    }
                )
        frame = gpd.GeoDataFrame(records, crs=crs)
        path = tmp_path_factory.mktemp("labels") / name
        (frame if to_crs is None else frame.to_crs(to_crs)).to_file(path)
        return path

    return make


@pytest.fixture(scope="session")
def flood_tiles(shared_data) -> list:
    """The Sen1Floods11 chip cut into 64-pixel samples by its `rsneo prepare` recipe (S2 + S1 + mask), read
    once for every shard test."""
    import warnings

    from rsneo.data.recipes import RECIPES

    recipe = RECIPES["sen1floods11"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        [item] = recipe.items(shared_data / "sen1floods11", 64)[:1]
        return recipe.load(item)


@pytest.fixture(scope="session")
def levir_crops(shared_data, tmp_path_factory) -> Path:
    """A change folder (A/ B/ label/) of the top-left 128 x 128 pixels of three real LEVIR-CD pairs: what the
    fine-tuning tests train on, a quarter of the pixels of the whole crops."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("levir_crops")
    for folder in ("A", "B", "label"):
        (root / folder).mkdir()
        for name in ("test_2_0000_0000", "test_7_0256_0512", "train_36_0512_0512"):
            pixels = np.asarray(Image.open(shared_data / "levir_cd" / folder / f"{name}.png"))[:128, :128]
            Image.fromarray(pixels).save(root / folder / f"{name}.png")
    return root
