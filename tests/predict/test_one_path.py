"""One path from raster to tokens: a window read for training and the same window read for prediction give
the same `ModelInputs` (normalisation, band groups, padding, dates and token size: `rsneo.data.frames`).

Training: `read_scene` -> `scene_frames` (and `fold_groups` for folded band groups, as the data module does)
-> `DocumentBuilder` -> `collate_rows`. Prediction: `band_layout` -> `aligned_datasets` ->
`RasterWindows.read` -> `window_documents`, what `rsneo segment`, `change` and `ask` call.

The windows hold no pixel that is nodata in some bands only: prediction masks whole pixels (GDAL's dataset
mask: valid where any band is, and on every date of a pair), training masks single values (NaN per band), so
such pixels would still differ (39 of them in landsat_pucallpa/1985.tif, 710 in RGB.byte.tif).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from rasterio.windows import Window

from rsneo.data.documents import DocumentBuilder, window_documents
from rsneo.data.frames import band_layout, fold_groups, scene_frames
from rsneo.data.packing import collate_rows
from rsneo.io.scene import read_scene
from rsneo.io.windows import RasterWindows, aligned_datasets, overview_size
from rsneo.model.config import RSNeoConfig
from rsneo.model.inputs import ImageTokens, ModelInputs
from rsneo.predict.inputs import layout_bands

RGB = "rasters/RGB.byte.tif"
S2HAND = "sen1floods11/S2/Spain_7370579_S2Hand.tif"
NAIP = "timeseries/naip_m4709963/m_4709963_se_14_1_{}.tif"
PAIR = [NAIP.format("20100629"), NAIP.format("20120731")]  # two dates on one grid
LANDSAT = "timeseries/landsat_pucallpa/1985.tif"  # an 8-bit stretch of Landsat 5: its own statistics
LANDSAT_BANDS = dict(sensor="landsat5_tm", bands=["B5", "B4", "B3", "B2"])


def config(token_size: int) -> RSNeoConfig:
    """The demo model's configuration with `token_size`-pixel tokens (16-pixel patches merged 2 x 2 = 32)."""
    return replace(RSNeoConfig.from_preset("demo"), patch_size=token_size // 2)


def training_inputs(
    paths: list[Path], window: Window, mode: str, cfg: RSNeoConfig, policy: str, stats=None, **read
) -> ModelInputs:
    scene = read_scene(paths, window=window, **read)
    frames = scene_frames(scene, stats=stats, token_size=cfg.token_size)
    builder = DocumentBuilder(None, ImageTokens.of(cfg))
    for frame in frames:
        builder.frame(fold_groups(frame.groups) if mode == "fold" else frame.groups)
    return collate_rows([[builder.end(eos=False)]], cfg, policy=policy)


def prediction_inputs(
    paths: list[Path], window: Window, mode: str, cfg: RSNeoConfig, policy: str, **read
) -> tuple[ModelInputs, list]:
    layouts = [band_layout(p, band_groups=mode, **read) for p in paths]
    with aligned_datasets(paths, *layout_bands(layouts)) as (datasets, *_):
        row, col, size = int(window.row_off), int(window.col_off), int(window.width)
        pixels, valid = RasterWindows(datasets).read(row, col, size)
    return window_documents(layouts, pixels[None], valid[None], cfg, policy), layouts


def assert_same_inputs(got: ModelInputs, expected: ModelInputs) -> None:
    """Token ids, document and block ids, positions exactly (integers, and S computed by one function from
    the same wavelengths); pixels and wavelengths to float32 rounding: both paths compute (value - mean) / std
    in float32 from the same values, so any difference is a last-bit one (~1e-7 relative)."""
    for name in ("input_ids", "doc_ids", "block_ids", "positions"):
        assert torch.equal(getattr(got, name), getattr(expected, name)), name
    assert len(got.images) == len(expected.images)
    for a, b in zip(got.images, expected.images, strict=True):
        assert (a.band_keys, a.time, a.token_size) == (b.band_keys, b.time, b.token_size)
        torch.testing.assert_close(a.wavelengths, b.wavelengths, rtol=1e-6, atol=0.0)
        torch.testing.assert_close(a.pixels, b.pixels, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["sensor", "fold"])
@pytest.mark.parametrize("token_size", [32, 16])
def test_one_date_gives_the_same_inputs_for_training_and_prediction(shared_data, mode, token_size):
    cfg = config(token_size)
    paths = [shared_data / S2HAND]
    window = Window(160, 96, 96, 96)
    expected = training_inputs(paths, window, mode, cfg, "frame")
    got, _ = prediction_inputs(paths, window, mode, cfg, "frame")
    assert_same_inputs(got, expected)
    groups = 1 if mode == "fold" else 5  # Sentinel-2's 13 bands: 5 sensor groups, or one folded
    assert len(got.images) == groups and sum(len(g.band_keys) for g in got.images) == 13
    assert got.images[0].grid == (96 // token_size, 96 // token_size)
    assert int((got.input_ids == cfg.img_context_token_id).sum()) == groups * (96 // token_size) ** 2


@pytest.mark.parametrize("mode", ["sensor", "fold"])
def test_nodata_is_zero_on_both_paths(shared_data, mode):
    """A window over the nodata collar of RGB.byte.tif (every band nodata together there)."""
    cfg = config(32)
    window = Window(64, 64, 96, 96)
    expected = training_inputs([shared_data / RGB], window, mode, cfg, "frame")
    got, _ = prediction_inputs([shared_data / RGB], window, mode, cfg, "frame")
    assert_same_inputs(got, expected)
    zeros = (got.images[0].pixels == 0).all(0)
    assert 0 < int(zeros.sum()) < 96 * 96  # the collar is zero (the mean), the image is not


@pytest.mark.parametrize("mode", ["sensor", "fold"])
def test_two_dates_give_the_same_inputs_for_training_and_prediction(shared_data, mode):
    cfg = config(32)
    paths = [shared_data / p for p in PAIR]
    window = Window(320, 256, 128, 128)
    expected = training_inputs(paths, window, mode, cfg, "scene")
    got, layouts = prediction_inputs(paths, window, mode, cfg, "scene")
    assert_same_inputs(got, expected)
    days = [g.time for g in got.images]
    assert days[0] == float((np.datetime64("2010-06-29") - np.datetime64("1970-01-01")).astype(int))
    assert days[-1] > days[0] and len(got.images) == 2 * (1 if mode == "fold" else 2)  # NAIP: rgb, nir
    assert (got.block_ids[got.input_ids == cfg.img_context_token_id] == 0).all()  # both dates, one block


def test_an_eight_bit_stretch_uses_the_statistics_it_was_given_on_both_paths(shared_data):
    """The raster's own statistics are measured once (`raster_statistics`) and used by both paths."""
    cfg = config(32)
    paths = [shared_data / LANDSAT]
    window = Window(0, 128, 128, 128)  # no pixel with a 0 in some bands only (see the module's notes)
    got, [layout] = prediction_inputs(paths, window, "sensor", cfg, "frame", **LANDSAT_BANDS)
    stats = (np.array(layout.mean), np.array(layout.std))
    expected = training_inputs(paths, window, "sensor", cfg, "frame", stats=stats, **LANDSAT_BANDS)
    assert_same_inputs(got, expected)
    assert 20 < layout.mean[0] < 235  # measured on the 8-bit values, not Landsat's reflectance statistics


def test_overviews_are_whole_tokens_of_the_model():
    assert overview_size(1000, 500, 512, 32) == (256, 512)  # the bundled model's 32-pixel tokens
    assert overview_size(1000, 500, 500, 48) == (240, 480)  # 250 / 48 -> 5 tokens, 500 / 48 -> 10
    assert overview_size(40, 20, 512, 16) == (16, 32)  # never less than one token a side
