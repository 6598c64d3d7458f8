"""Change head: identical dates give no change; on the Taizhou Landsat pair the change score separates the
reference changed and unchanged pixels even before training (a feature distance)."""

from __future__ import annotations

import numpy as np
import rasterio
import torch
from PIL import Image

from rsneo.data.documents import image_documents
from rsneo.data.frames import band_layout
from rsneo.heads.change import ChangeHead, ChangeHeadConfig
from rsneo.heads.features import image_features


def scene_features(system, layouts, pixels, size):
    valid = np.ones((size, size), bool)
    frames = [[layout.images(p[:, :size, :size], valid) for layout, p in zip(layouts, pixels, strict=True)]]
    inputs = image_documents(frames, system.config, policy="scene")
    assert inputs.block_ids[inputs.block_ids >= 0].unique().tolist() == [0]  # every frame in one block
    return image_features(system.model, inputs, system.change.config.early_layer, frames=len(pixels))


def test_identical_dates_show_no_change(tiny_system, shared_data):
    path = shared_data / "landsat_change_taizhou" / "2000TM"
    layout = band_layout(path)
    with rasterio.open(path) as src:
        pixels = src.read().astype(np.float32)
    with torch.no_grad():
        logits = tiny_system.change(scene_features(tiny_system, [layout, layout], [pixels, pixels], 128))
    assert logits.shape == (1, 2, 128, 128)
    assert (logits.softmax(1)[:, 1] < 0.5).all()


def test_untrained_change_score_ranks_taizhou_reference_pixels(tiny_system, shared_data):
    folder = shared_data / "landsat_change_taizhou"
    layouts = [band_layout(folder / name) for name in ("2000TM", "2003TM")]
    pixels = []
    for name in ("2000TM", "2003TM"):
        with rasterio.open(folder / name) as src:
            pixels.append(src.read().astype(np.float32))
    with torch.no_grad():
        p_change = (
            tiny_system.change(scene_features(tiny_system, layouts, pixels, 384)).softmax(1)[0, 1].numpy()
        )
    changed = np.asarray(Image.open(folder / "change.bmp"))[:384, :384] > 0
    unchanged = np.asarray(Image.open(folder / "unchanged.bmp"))[:384, :384] > 0
    recall = (p_change[changed] >= 0.5).mean()
    specificity = (p_change[unchanged] < 0.5).mean()
    assert (recall + specificity) / 2 > 0.85, (recall, specificity)


def test_change_loss_ignores_unknown_pixels():
    head = ChangeHead(ChangeHeadConfig(hidden_size=8))
    logits = torch.randn(1, 2, 3, 3)
    labels = torch.tensor([[[0, 1, -1], [1, 1, -1], [0, 0, -1]]])
    expected = torch.nn.functional.cross_entropy(logits[..., :2], labels[..., :2])
    torch.testing.assert_close(head.loss(logits, labels), expected)


def test_blur_keeps_regions_and_damps_isolated_pixels():
    """A changed region keeps its level inside, one noisy pixel falls to the kernel's centre weight, a flat
    field stays flat (edges mirrored, no darkening at the border); sigma 0 changes nothing."""
    from rsneo.heads.change import blur

    field = torch.zeros(1, 1, 40, 40)
    field[..., 5:25, 5:25] = 1.0  # a 20 px changed square
    field[..., 32, 32] = 1.0  # one noisy pixel
    out = blur(field, 1.0)
    assert out.shape == field.shape
    assert out[0, 0, 15, 15] > 0.99 and out[0, 0, 32, 32] < 0.2  # 1 / (2 pi) of a Gaussian, truncated
    torch.testing.assert_close(blur(torch.full((2, 1, 9, 7), 3.0), 1.0), torch.full((2, 1, 9, 7), 3.0))
    torch.testing.assert_close(blur(torch.ones(1, 1, 2, 2), 1.0), torch.ones(1, 1, 2, 2))  # tiny: replicated
    assert torch.equal(blur(field, 0.0), field)
    # with a valid mask, nodata (here a zero-filled collar, as a window padded past the raster's edge) does
    # not darken the valid pixels beside it: a flat valid field stays flat up to its edge
    flat = torch.full((1, 1, 20, 20), 2.0)
    flat[..., :, 15:] = 0.0
    valid = torch.zeros(1, 1, 20, 20, dtype=torch.bool)
    valid[..., :, :15] = True
    torch.testing.assert_close(blur(flat, 1.0, valid)[..., :, :15], torch.full((1, 1, 20, 15), 2.0))
    assert blur(flat, 1.0)[0, 0, 10, 14] < 1.8  # without the mask the collar leaks in


def test_bundled_change_head_carries_its_fitted_combination():
    """The bundled folder's change head comes with the magnitude combination fit on NAIP + Pucallpa pairs
    (benchmarks/change.py measures it); losing it from heads.json would silently fall back to the head."""
    from rsneo.heads.system import BUNDLED_MODEL, load_heads

    _, change, loaded = load_heads(BUNDLED_MODEL, 256)
    assert "change" in loaded and change.uses_magnitude
    assert change.config.magnitude_weight > 0 and change.config.head_weight > 0  # both terms vote for change
