"""Label-as-text segmentation head: shapes, "none of these", the loss, and unseen class names."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from rsneo.data.documents import image_documents
from rsneo.data.frames import band_layout
from rsneo.heads.features import ImageFeatures, encode_class_prompts, image_features
from rsneo.heads.segmentation import SegmentationHead, SegmentationHeadConfig

S2 = ("sen1floods11", "S2", "Spain_7370579_S2Hand.tif")
LABEL = ("sen1floods11", "Labels", "Spain_7370579_LabelHand.tif")


def crops(shared_data, size=256):
    """Square crops tiling the Sen1Floods11 chip: band groups and water labels (0 water, 1 land)."""
    path = shared_data.joinpath(*S2)
    layout = band_layout(path)
    with rasterio.open(path) as src:
        pixels = src.read().astype(np.float32)  # (13, 512, 512)
    with rasterio.open(shared_data.joinpath(*LABEL)) as src:
        label = src.read(1)  # (512, 512): -1 no data, 0 not water, 1 water
    corners = [(r, c) for r in range(0, 512, size) for c in range(0, 512, size)]
    frames = [
        [layout.images(pixels[:, r : r + size, c : c + size], np.ones((size, size), bool))]
        for r, c in corners
    ]
    labels = torch.stack(
        [torch.from_numpy(label[r : r + size, c : c + size].astype(np.int64)) for r, c in corners]
    )
    labels = torch.where(labels == 1, 0, torch.where(labels == 0, 1, -1))
    return frames, labels


def water_iou(head, features, class_vectors, labels, water_index):
    with torch.no_grad():
        predicted = head(features, class_vectors).argmax(1)
    known = labels >= 0
    truth, guess = labels == 0, predicted == water_index
    return float((truth & guess & known).sum() / ((truth | guess) & known).sum())


def test_head_shapes_and_none_of_these(tiny_system, shared_data):
    frames, _ = crops(shared_data)
    system = tiny_system
    with torch.no_grad():
        features = image_features(system.model, image_documents(frames[:2], system.config), 1)
        vectors = encode_class_prompts(
            system.model, system.tokenizer, ["water", "land", "forest"], system.segmentation.config
        )
        logits = system.segmentation(features, vectors)
    assert features.last.shape == (2, 1, system.config.hidden_size, 8, 8)
    assert features.pixels.shape == (2, 1, 13, 256, 256)
    assert logits.shape == (2, 3, 256, 256)
    scale = float(system.segmentation.scale.detach())
    assert logits.abs().max() <= scale + 1e-4  # scaled cosine
    never = system.segmentation.probabilities(logits, none_threshold=-1.0)
    always = system.segmentation.probabilities(logits, none_threshold=1.0)
    torch.testing.assert_close(never.sum(1), torch.ones(2, 256, 256))
    assert (never.argmax(1) != 3).all()
    assert (always[:, 3] >= always[:, :3].max(1).values - 1e-6).all()


def test_loss_ignores_unlabelled_pixels():
    head = SegmentationHead(SegmentationHeadConfig(hidden_size=8))
    logits = torch.randn(1, 2, 4, 4)
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, :2] = -1
    expected = torch.nn.functional.cross_entropy(logits[:, :, 2:], labels[:, 2:])
    torch.testing.assert_close(head.loss(logits, labels), expected)


@pytest.mark.slow
def test_paraphrased_class_names_find_the_water_a_tiny_trained_head_learned(tiny_system, shared_data):
    """Train on "water"/"land" for 30 steps, then ask for "open water"/"dry land" in the other order."""
    torch.manual_seed(0)
    system = tiny_system
    frames, labels = crops(shared_data, size=128)  # 16 crops
    head = SegmentationHead(system.segmentation.config)
    with torch.no_grad():
        features = image_features(
            system.model, image_documents(frames, system.config), head.config.early_layer
        )
        encode = lambda names: encode_class_prompts(system.model, system.tokenizer, names, head.config)
        trained, paraphrased = encode(["water", "land"]), encode(["dry land", "open water"])
    optimiser = torch.optim.AdamW(head.parameters(), lr=3e-3)
    for step in range(30):
        pick = [(4 * step + i) % 16 for i in range(4)]
        batch = ImageFeatures(
            features.last[pick], features.early[pick], features.pixels[pick], features.wavelengths
        )
        loss = head.loss(head(batch, trained), labels[pick])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    head.eval()
    seen = water_iou(head, features, trained, labels, water_index=0)
    unseen = water_iou(head, features, paraphrased, labels, water_index=1)
    assert seen > 0.6
    assert unseen > 0.6  # the water is found under names never trained, listed in the other order
    assert abs(unseen - seen) < 0.1
