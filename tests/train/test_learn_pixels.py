"""`rsneo.train.learn_pixels`: labels burnt onto the rasters, the backbone's context kept at labelled
pixels."""

from __future__ import annotations

import numpy as np
import torch

from rsneo.heads.system import load_system
from rsneo.io.labels import read_labels
from rsneo.train.learn_config import LearnSettings
from rsneo.train.learn_fit import fit_head, pixel_logits
from rsneo.train.learn_pixels import (
    LabelledPixels,
    labelled_windows,
    merge_by_bands,
    prepare_rasters,
    window_starts,
)

S2 = ("sen1floods11", "S2", "Spain_7370579_S2Hand.tif")


def test_labelled_pixel_path_equals_the_segmentation_head(tiny_system, shared_data, flood_points):
    """The cheap training path (frozen context cached at labelled pixels) gives the head's own logits."""
    from rsneo.data.documents import image_documents
    from rsneo.heads.features import image_features
    from rsneo.io.dataset import open_raster
    from rsneo.io.windows import RasterWindows

    labels = read_labels(flood_points, "cover")
    raster = prepare_rasters([shared_data.joinpath(*S2)], labels)[0]
    windows = labelled_windows(tiny_system, [raster], 256)
    vectors = torch.randn(2, tiny_system.config.hidden_size)
    head = tiny_system.segmentation
    first = windows[0]
    with open_raster(raster.path) as src:
        pixels, valid = RasterWindows([src]).read(0, 0, 256)
    inputs = image_documents([[raster.layout.images(pixels, valid)]], tiny_system.config)
    with torch.no_grad():
        full = head(image_features(tiny_system.model, inputs, head.config.early_layer), vectors)[0]  # (K,S,S)
        cheap = pixel_logits(head, first, vectors)  # (K, n)
    mask = torch.from_numpy((raster.classes[:256, :256] >= 0) & valid)
    assert cheap.shape[1] == int(mask.sum()) > 0
    # float32 sums in another order (a 1x1 conv after vs before bilinear upsampling): ~1e-6 relative
    torch.testing.assert_close(cheap, full[:, mask], rtol=1e-4, atol=1e-4)


def test_bf16_backbone(tiny_model_dir, shared_data, flood_points):
    """A bf16 backbone feeds the float32 head training; learnt vectors come back in the model's dtype."""
    system = load_system(tiny_model_dir)
    system.model.to(torch.bfloat16)
    raster = prepare_rasters([shared_data.joinpath(*S2)], read_labels(flood_points, "cover"))[0]
    windows = labelled_windows(system, [raster], 256)
    assert all(w.context.dtype == torch.float32 and torch.isfinite(w.context).all() for w in windows)
    use = torch.ones(24, dtype=torch.bool)
    head, vectors = fit_head(system.segmentation, torch.zeros(2, system.config.hidden_size), windows, use,
                             LearnSettings(steps=3, features="all"))  # fmt: skip
    assert torch.isfinite(vectors).all() and vectors.dtype == torch.float32
    assert not torch.equal(vectors, torch.zeros_like(vectors))  # the vectors trained


def test_windows_hold_labels_and_rasters_with_the_same_bands_train_together():
    classes = np.full((300, 600), -1)
    classes[10, 10] = 0
    classes[290, 590] = 1  # in the last, partial window
    assert list(window_starts(classes, 256)) == [(0, 0), (256, 512)]

    def part(n: int, wavelengths: torch.Tensor) -> LabelledPixels:
        no_class = torch.zeros(n, dtype=torch.long)
        return LabelledPixels(torch.randn(4, n), torch.randn(3, n), wavelengths, no_class, torch.arange(n))

    rgb, nir = torch.tensor([0.66, 0.56, 0.49]), torch.tensor([0.84, 0.66, 0.56])
    merged = merge_by_bands([part(2, rgb), part(3, nir), part(5, rgb)])
    assert [m.classes.shape[0] for m in merged] == [7, 3]
    assert torch.equal(merged[0].wavelengths, rgb) and merged[0].context.shape == (4, 7)
