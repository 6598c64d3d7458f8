"""LEGACY channels: folders of the first S layout (own S channels, like the bundled model) load as that layout
and compute what they computed before the phase layout. Delete with rsneo/model/legacy_channels.py.

`data/legacy_channels_bundled.safetensors` holds an input and the bundled model's outputs on it, computed with
the code before the phase layout (commit 083c576).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from safetensors.torch import load_file

from rsneo.heads.system import BUNDLED_MODEL
from rsneo.model import ImageInput, RSNeoConfig, RSNeoForCausalLM, pack_documents

REFERENCE = Path(__file__).with_name("data") / "legacy_channels_bundled.safetensors"


def bundled_inputs(config: RSNeoConfig, saved: dict[str, torch.Tensor]):
    groups = [
        ImageInput(saved["rgb"], torch.tensor([0.665, 0.56, 0.49]), ("red", "green", "blue"), 0.0),
        ImageInput(saved["swir"], torch.tensor([1.61, 2.19]), ("swir16", "swir22"), 0.0),
    ]
    return pack_documents([[(saved["input_ids"], groups), (saved["text_ids"], [])]], config)


def test_a_config_without_a_layout_is_the_channels_layout():
    config = RSNeoConfig.load(BUNDLED_MODEL / "config.json")
    assert config.spectral_layout == "channels" and config.spectral_head_dim == 16
    assert config.qk_dim == 2 * config.head_dim + 16
    assert RSNeoConfig.from_dict(config.to_dict()).spectral_layout == "channels"  # and it is saved as such


def test_the_bundled_model_computes_what_it_computed_before():
    """fp32 on both sides; the reference was computed by the earlier code (same kernels, GQA heads repeated
    then, shared now): measured 0 on this machine; 1e-4 leaves room for other CPU kernel sets on values
    up to ~6 (hidden) and ~17 (logits)."""
    saved = load_file(str(REFERENCE))
    model = RSNeoForCausalLM.from_pretrained(BUNDLED_MODEL)
    inputs = bundled_inputs(model.config, saved)
    with torch.no_grad():
        out = model(inputs)
    last = saved["input_ids"].numel() - 1
    torch.testing.assert_close(out.last_hidden_state[0], saved["last_hidden_state"], rtol=0, atol=1e-4)
    torch.testing.assert_close(out.logits[0, [last, -1]], saved["logits_last"], rtol=0, atol=1e-4)
    # the S channels are live in this model: other spectral differences give other outputs
    moved = copy.deepcopy(inputs)
    moved.positions[3] *= 2.0
    with torch.no_grad():
        assert (model(moved).last_hidden_state - out.last_hidden_state).abs().max() > 1e-3


def test_the_channels_gate_shut_makes_s_change_nothing():
    config = RSNeoConfig(spectral_layout="channels", spectral_head_dim=8)
    torch.manual_seed(0)
    model = RSNeoForCausalLM(config).eval()
    assert all(not layer.self_attn.k_norm_s.weight.any() for layer in model.backbone.layers)  # starts shut
    assert model.config.qk_dim == 40 and model.backbone.layers[0].self_attn.spectral_frequencies is None
    ids = torch.tensor([1, 2, config.img_start_token_id] + [config.img_context_token_id] * 2)
    ids = torch.cat((ids, torch.tensor([config.img_end_token_id, 3])))
    image = ImageInput(torch.randn(3, 32, 64), torch.tensor([0.665, 0.56, 0.49]), ("red", "green", "blue"))
    inputs = pack_documents([[(ids, [image])]], config)
    moved = copy.deepcopy(inputs)
    moved.positions[3] *= 3.0
    with torch.no_grad():
        assert torch.equal(model(inputs).logits, model(moved).logits)
        for layer in model.backbone.layers:
            layer.self_attn.k_norm_s.weight.fill_(1.0)
        assert (model(inputs).logits - model(moved).logits).abs().max() > 1e-6
    groups = model.parameter_groups()["native_positions"]
    assert "backbone.layers.1.self_attn.k_proj_s.weight" in groups
