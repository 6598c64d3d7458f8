"""The change map (`rsneo.predict.maps.change`): scene calibration of an untrained head, and the scene's
change magnitude."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from rsneo.baselines import otsu_threshold
from rsneo.data.frames import band_layout
from rsneo.predict.inputs import open_dates
from rsneo.predict.maps.change import SceneMagnitude, change_map


def test_otsu_threshold_splits_two_groups():
    values = np.concatenate([np.linspace(0.0, 0.1, 900), np.linspace(0.5, 0.7, 100)])
    threshold = otsu_threshold(values)
    assert 0.1 <= threshold <= 0.5


def test_an_untrained_head_is_cut_on_this_scene_and_the_cut_signs_the_map(tiny_system, shared_data):
    """A folder whose change head was never trained: the head's threshold is moved to Otsu's cut of the
    scene's feature distances, which lies inside their range, so the map marks some of the pair and not all;
    the cut is part of the map's calibration (saved progress of another cut is not resumed)."""
    untrained = replace(tiny_system, trained_heads=("segmentation",))
    pair = sorted((shared_data / "timeseries" / "naip_m4709963").glob("*.tif"))[:2]
    layouts = [band_layout(p) for p in pair]
    with open_dates(pair, layouts) as inputs:
        spec = change_map(untrained, inputs)
        pixels, valid = inputs.windows().read(0, 0, 128)
    head = spec.predict.head
    assert head is not tiny_system.change  # a calibrated copy: the loaded head is untouched
    assert spec.calibration == (float(head.threshold.detach()), float(head.log_scale.detach()))
    assert float(head.threshold.detach()) != float(tiny_system.change.threshold.detach())
    probs = spec.predict(pixels[None], valid[None])  # (1, 2, 128, 128): P(no change), P(change)
    assert probs.shape == (1, 2, 128, 128)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    changed = (probs[0, 1] >= 0.5)[valid]
    assert 0.0 < changed.mean() < 1.0
    assert spec.legend.names == ("no change", "change")


def test_combination_without_the_head_is_cva_with_otsu_on_the_blurred_magnitude(shared_data):
    """head_weight 0, magnitude_weight 1, bias 0: the combined map is the CVA + Otsu baseline computed on the
    magnitude blurred by a Gaussian of `MAGNITUDE_SIGMA` pixels (scipy's filter as the reference: same
    standardisation, same cut), in float32 and bf16 (pixels within float rounding of the cut may differ)."""
    import rasterio
    from scipy import ndimage

    from rsneo.baselines import change_vector_magnitude, standardise_bands
    from rsneo.heads.change import MAGNITUDE_SIGMA, ChangeHead, ChangeHeadConfig

    folder = shared_data / "landsat_change_taizhou"
    with rasterio.open(folder / "2000TM") as first, rasterio.open(folder / "2003TM") as last:
        scene = SceneMagnitude.measure(first, last)  # 400 px a side: every pixel read
        before, after = first.read().astype(np.float32), last.read().astype(np.float32)
    head = ChangeHead(ChangeHeadConfig(hidden_size=8, head_weight=0.0, magnitude_weight=1.0, bias=0.0))
    assert head.uses_magnitude
    excess = scene.excess(before[None], after[None])  # (1, 1, H, W)
    magnitude = change_vector_magnitude(standardise_bands(before), standardise_bands(after))
    blurred = ndimage.gaussian_filter(magnitude, MAGNITUDE_SIGMA, mode="mirror", truncate=2.0)
    expected = blurred > otsu_threshold(blurred.ravel())
    assert 0.05 < expected.mean() < 0.5  # a real split of the scene, not an empty map
    for dtype in (torch.float32, torch.bfloat16):
        logits = head.combine(torch.zeros(1, 2, *expected.shape, dtype=dtype), excess)
        assert logits.dtype == dtype
        changed = (logits.float().softmax(1)[0, 1] > 0.5).numpy()
        near_cut = np.abs(excess[0, 0].numpy()) < (1e-5 if dtype == torch.float32 else 1e-2)
        assert np.array_equal(changed[~near_cut], expected[~near_cut])
        assert near_cut.mean() < 0.01
    alone = (head.magnitude_alone(excess).softmax(1)[0, 1] > 0.5).numpy()  # the same map without any head
    near_cut = np.abs(excess[0, 0].numpy()) < 1e-5
    assert np.array_equal(alone[~near_cut], expected[~near_cut])
