"""Spectral patch embedding: NEO's RGB exactly, order free, and unseen sensors land near their look-alikes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from rsneo.model import ImageInput, RSNeoConfig
from rsneo.model.patch_embed import SpectralPatchEmbedding

S2 = {  # Sentinel-2 common names and central wavelengths (um)
    "coastal": 0.443, "blue": 0.49, "green": 0.56, "red": 0.665, "rededge": 0.705, "nir": 0.842,
    "nir09": 0.945, "cirrus": 1.375, "swir16": 1.61, "swir22": 2.19,
}  # fmt: skip
LANDSAT7 = [0.485, 0.56, 0.66, 0.835, 1.65, 2.22]  # ETM+ bands 1-5 and 7


def test_rgb_kernel_is_neo_patch_embedding_bit_for_bit(golden_dir, golden_model):
    """With the (exact) golden vision_embeds test, this pins the NEO initialisation of the embedding."""
    w = load_file(str(golden_dir / "neo_tiny_weights.safetensors"))
    kernel = golden_model.backbone.vision.band_kernels(
        torch.tensor([0.665, 0.56, 0.49]), ("red", "green", "blue")
    )
    assert torch.equal(kernel, w["vision_model.embeddings.patch_embedding.weight"])
    # the same bands in another order give the same kernels, reordered, still exactly
    kernel_bgr = golden_model.backbone.vision.band_kernels(
        torch.tensor([0.49, 0.56, 0.665]), ("blue", "green", "red")
    )
    assert torch.equal(kernel_bgr, kernel.flip(1))


def trained_like_embedding() -> SpectralPatchEmbedding:
    """A tiny embedding with random anchors and corrections, as after training."""
    torch.manual_seed(0)
    pel = SpectralPatchEmbedding(RSNeoConfig.from_preset("tiny"))
    with torch.no_grad():
        pel.anchors.normal_()
        pel.corrections.normal_(std=0.05)
        pel.patch_bias.normal_()
    return pel


def test_band_order_does_not_matter_when_wavelengths_travel_with_bands():
    pel = trained_like_embedding()
    keys = ("blue", "green", "red", "nir", "swir16")
    wl = torch.tensor([S2[k] for k in keys])
    pixels = torch.randn(5, 64, 96)
    perm = torch.tensor([3, 0, 4, 2, 1])
    a = pel([ImageInput(pixels, wl, keys)])
    b = pel([ImageInput(pixels[perm], wl[perm], tuple(keys[i] for i in perm))])
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert a.shape == (6, 64)


def test_unseen_sensor_runs_and_lands_near_its_look_alikes():
    pel = trained_like_embedding()
    with torch.no_grad():
        s2_keys = list(S2)
        s2_kernels = pel.band_kernels(torch.tensor([S2[k] for k in s2_keys]), s2_keys)  # (v, 10, p, p)
        # Landsat-7 without band names: only wavelengths travel with it
        l7 = pel.band_kernels(torch.tensor(LANDSAT7), [""] * 6)
    expected = ["blue", "green", "red", "nir", "swir16", "swir22"]
    for i, name in enumerate(expected):
        dist = (s2_kernels - l7[:, i : i + 1]).flatten(2).norm(dim=(0, 2))
        assert s2_keys[int(dist.argmin())] == name, (LANDSAT7[i], dist)
    out = pel([ImageInput(torch.randn(6, 64, 64), torch.tensor(LANDSAT7), ("",) * 6)])
    assert out.shape == (4, 64) and torch.isfinite(out).all()


def test_sar_and_any_band_count_run():
    pel = trained_like_embedding()
    sar = ImageInput(torch.randn(2, 32, 32), torch.tensor([55465.0, 55465.0]), ("vv", "vh"))
    single = ImageInput(torch.randn(1, 32, 64), torch.tensor([0.842]), ("nir",))
    out = pel([sar, single])
    assert out.shape == (3, 64)


def test_groups_sharing_a_band_set_are_batched_without_changing_results():
    pel = trained_like_embedding()
    wl, keys = torch.tensor([0.49, 0.56, 0.665, 0.842]), ("blue", "green", "red", "nir")
    a, b = ImageInput(torch.randn(4, 64, 64), wl, keys), ImageInput(torch.randn(4, 64, 64), wl, keys)
    other = ImageInput(torch.randn(2, 32, 32), torch.tensor([1.61, 2.19]), ("swir16", "swir22"))
    together = pel([a, other, b])
    apart = torch.cat([pel([a]), pel([other]), pel([b])])
    torch.testing.assert_close(together, apart, rtol=0, atol=1e-5)


# ---- the kernel cache: one build per band set without gradients, never stale -----------------------------


def s2_groups(dtype: torch.dtype = torch.float32) -> list[ImageInput]:
    torch.manual_seed(3)
    keys = ("blue", "green", "red", "nir")
    return [
        ImageInput(torch.randn(4, 32, 64).to(dtype), torch.tensor([S2[k] for k in keys]), keys) for _ in "ab"
    ]


def counted_builds(pel: SpectralPatchEmbedding, monkeypatch) -> list[int]:
    builds: list[int] = []
    real = pel.band_kernels
    monkeypatch.setattr(pel, "band_kernels", lambda *a: builds.append(1) or real(*a))
    return builds


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 0.0), (torch.bfloat16, 0.0)])
def test_without_gradients_a_band_set_kernel_is_built_once_and_gives_the_same_tokens(
    dtype, atol, monkeypatch
):
    """The cached kernel is the very kernel a fresh build gives (same ops, same order): equal bit for bit."""
    pel = trained_like_embedding().to(dtype)
    builds = counted_builds(pel, monkeypatch)
    with torch.no_grad():
        first = pel(s2_groups(dtype))
        second = pel(s2_groups(dtype))
    assert len(builds) == 1  # two forwards, two groups each: one build
    fresh = pel(s2_groups(dtype)).detach()  # with gradients: built anew, inside the graph
    assert len(builds) == 2
    torch.testing.assert_close(first, fresh, rtol=0, atol=atol)
    torch.testing.assert_close(second, fresh, rtol=0, atol=atol)


def test_updated_weights_are_never_served_stale(monkeypatch):
    pel = trained_like_embedding()
    builds = counted_builds(pel, monkeypatch)
    with torch.no_grad():
        before = pel(s2_groups())
    pel(s2_groups()).square().mean().backward()  # with gradients: the anchors get one
    assert pel.anchors.grad.abs().sum() > 0
    torch.optim.SGD(pel.parameters(), lr=0.5).step()  # an in-place update of the kernel parameters
    with torch.no_grad():
        after = pel(s2_groups())
    expected = pel(s2_groups()).detach()
    torch.testing.assert_close(after, expected, rtol=0, atol=0)
    assert (after - before).abs().max() > 1e-3  # the cache did not hand back the old kernel
    pel.load_state_dict(trained_like_embedding().state_dict(), assign=True)  # new tensors altogether
    with torch.no_grad():
        torch.testing.assert_close(pel(s2_groups()), before, rtol=0, atol=0)
    assert len(builds) == 5  # before, the graph, after, expected, after loading
