"""The segmentation map (`rsneo.predict.maps.segmentation`): the head's class probabilities over windows."""

from __future__ import annotations

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from rsneo.data.documents import window_documents
from rsneo.data.frames import band_layout
from rsneo.heads.features import encode_class_prompts, image_features
from rsneo.heads.vocabulary import ClassReadings
from rsneo.predict.maps.segmentation import segmentation_map

S2 = ("sen1floods11", "S2", "Spain_7370579_S2Hand.tif")


def test_the_map_is_the_heads_probabilities_with_none_of_these_last(tiny_system, shared_data):
    """Two windows of the flood chip: K + 1 channels summing to 1, the same numbers as the head applied to
    the windows' documents by hand; the legend names the classes, marks the untrained, carries the notes."""
    path = shared_data.joinpath(*S2)
    layout = band_layout(path)
    with rasterio.open(path) as src:
        pixels = np.stack([src.read(window=Window(c, 0, 64, 64)).astype(np.float32) for c in (0, 64)])
    valid = np.ones((2, 64, 64), bool)
    valid[1, :8] = False  # a nodata strip in the second window
    spec = segmentation_map(
        tiny_system, layout, ["water", "forest"], readings=ClassReadings(("forest",)), notes=("a note",)
    )
    assert spec.legend.names == ("water", "forest", "none of these")
    assert spec.legend.label(1) == "forest (untrained)" and spec.legend.notes == ("a note",)
    probs = spec.predict(pixels, valid)
    assert probs.shape == (2, 3, 64, 64) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    head = tiny_system.segmentation
    with torch.no_grad():
        inputs = window_documents([layout], pixels, valid, tiny_system.config)
        vectors = encode_class_prompts(
            tiny_system.model, tiny_system.tokenizer, ["water", "forest"], head.config
        )
        expected = head.probabilities(
            head(image_features(tiny_system.model, inputs, head.config.early_layer), vectors)
        )
    np.testing.assert_allclose(probs, expected.numpy(), rtol=1e-4, atol=1e-6)
