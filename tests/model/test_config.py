"""Config presets: the golden tiny one, a demo that fits the bundle, the published NEO sizes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import rsneo
from rsneo.errors import InputError
from rsneo.model import PRESETS, ImageInput, RSNeoConfig, RSNeoForCausalLM
from rsneo.model.config import rope_linear_factor


def test_tiny_preset_is_the_golden_config(golden_config):
    assert RSNeoConfig.from_preset("tiny", name="neo") == golden_config


def parameter_count(config: RSNeoConfig) -> int:
    with torch.device("meta"):
        model = RSNeoForCausalLM(config)
    return sum(p.numel() for p in model.parameters())  # tied weights count once


def test_demo_fits_45_mb_in_fp32():
    cfg = RSNeoConfig.from_preset("demo")
    assert cfg.vocab_size == 8192
    assert parameter_count(cfg) * 4 < 45e6


@pytest.mark.parametrize(
    ("name", "llm_layers", "prebuffer", "billions"),
    [("neo-2.2b", 28, 12, (2.2, 3.2)), ("neo-9b", 36, 6, (9.0, 11.0))],
)
def test_neo_sizes(name, llm_layers, prebuffer, billions):
    """The Qwen3 base's layers behind NEO's pre-buffer; counts include every layer's H/W/S projections."""
    cfg = RSNeoConfig.from_preset(name)
    assert cfg.post_layers == llm_layers and cfg.prebuffer_layers == prebuffer
    low, high = billions
    assert low < parameter_count(cfg) / 1e9 < high


def test_round_trip_and_errors(tmp_path):
    cfg = RSNeoConfig.from_preset("demo", date_spacing=0.25)
    cfg.save(tmp_path / "c.json")
    assert RSNeoConfig.load(tmp_path / "c.json") == cfg
    with pytest.raises(InputError, match="expected one of"):
        RSNeoConfig.from_preset("neo-70b")
    with pytest.raises(InputError, match="prebuffer_layers"):
        RSNeoConfig(num_layers=2, prebuffer_layers=3)
    with pytest.raises(InputError, match="unknown keys"):
        RSNeoConfig.from_dict({"hidden": 3})
    assert set(PRESETS) == {"tiny", "demo", "neo-2.2b", "neo-9b"}


def test_neo_release_config_without_token_ids_or_head_dim():
    neo = {
        "llm_config": {
            "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 40,
            "extra_num_layers": 12, "num_attention_heads": 16, "num_key_value_heads": 8,
            "rope_parameters": {"rope_theta": 1e6, "rope_type": "default"}, "tie_word_embeddings": True,
        },
        "vision_config": {"hidden_size": 1024, "rope_theta_vision": 1000.0},
        "img_start_token_id": 151670,
        "img_context_token_id": 151669,
    }  # fmt: skip
    cfg = RSNeoConfig.from_neo_json(neo)
    assert (cfg.head_dim, cfg.rope_theta, cfg.prebuffer_layers, cfg.post_layers) == (128, 1e6, 12, 28)
    # NEO adds <IMG_CONTEXT>, <img>, </img> in this order after Qwen3's 151669 ids; the presets agree
    ids = (cfg.img_start_token_id, cfg.img_end_token_id, cfg.img_context_token_id)
    assert ids == (151670, 151671, 151669)
    for name in ("neo-2.2b", "neo-9b"):
        preset = RSNeoConfig.from_preset(name)
        assert (preset.img_start_token_id, preset.img_end_token_id, preset.img_context_token_id) == ids
    preset = RSNeoConfig.from_preset("neo-2.2b")
    assert (cfg.vision_hidden_size, cfg.rope_theta_vision) == (
        preset.vision_hidden_size,
        preset.rope_theta_vision,
    )
    del neo["llm_config"]["extra_num_layers"]
    with pytest.raises(InputError, match="extra_num_layers"):
        RSNeoConfig.from_neo_json(neo)
    assert RSNeoConfig.from_neo_json(neo, prebuffer_layers=12).prebuffer_layers == 12


@pytest.mark.parametrize(
    ("scaling", "factor"),
    [(None, 1.0), ({"rope_type": "default"}, 1.0), ({"type": "linear", "factor": 4.0}, 4.0)],
)
def test_rope_scaling_linear_is_honoured(scaling, factor):
    assert rope_linear_factor({"rope_scaling": scaling}, "cfg") == factor


def test_rope_scaling_of_other_types_is_refused_by_name():
    with pytest.raises(InputError, match="rope_scaling type 'yarn'"):
        rope_linear_factor({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "cfg")


def test_the_bundled_config_json_loads_with_32_pixel_tokens():
    bundled = Path(rsneo.__file__).parent / "assets" / "model" / "config.json"
    config = RSNeoConfig.load(bundled)
    assert config.token_size == 32 == config.patch_size * config.merge_size
    assert json.loads(bundled.read_text())["patch_size"] == 16


def test_token_size_follows_patch_and_merge_size():
    """The image token grid comes from the config: 8-pixel patches merged 2x2 give 16-pixel tokens."""
    cfg = RSNeoConfig.from_preset("tiny", patch_size=8, merge_size=2)
    assert cfg.token_size == 16
    model = RSNeoForCausalLM(cfg).eval()
    wavelengths = torch.tensor([0.665, 0.56, 0.49])
    image = ImageInput(torch.randn(3, 32, 48), wavelengths, ("red", "green", "blue"), None, token_size=16)
    assert image.grid == (2, 3) and image.num_tokens == 6
    assert model.backbone.vision([image]).shape[0] == 6
    with pytest.raises(InputError, match="made for 32-pixel tokens, but this model's tokens are 16 pixels"):
        model.backbone.vision([ImageInput(image.pixels, image.wavelengths, image.band_keys)])


def test_band_groups_is_a_saved_field_and_configs_with_the_old_extra_record_still_load(tmp_path):
    bundled = Path(rsneo.__file__).parent / "assets" / "model" / "config.json"
    assert json.loads(bundled.read_text())["band_groups"] == "fold"  # retrained with folded band groups
    assert RSNeoConfig.load(bundled).band_groups == "fold"
    cfg = RSNeoConfig.from_preset("tiny", band_groups="fold")
    cfg.save(tmp_path / "new.json")
    saved = json.loads((tmp_path / "new.json").read_text())
    assert saved["band_groups"] == "fold" and "extra" not in saved
    assert RSNeoConfig.load(tmp_path / "new.json").band_groups == "fold"
    old = {k: v for k, v in saved.items() if k != "band_groups"}
    for extra, expected in (({"band_groups": "fold"}, "fold"), ({}, "sensor")):
        (tmp_path / "old.json").write_text(json.dumps({**old, "extra": extra}))
        assert RSNeoConfig.load(tmp_path / "old.json") == replace(cfg, band_groups=expected)


def test_attn_backend_is_checked_and_not_saved_with_the_weights():
    cfg = RSNeoConfig.from_preset("tiny", attn_backend="sdpa")
    assert cfg.attn_backend == "sdpa" and "attn_backend" not in cfg.to_dict()
    assert RSNeoConfig.from_dict(cfg.to_dict()).attn_backend == "auto"  # each process chooses its own
    with pytest.raises(InputError, match=r"attn_backend must be one of \['auto', 'sdpa', 'flex', 'flash'\]"):
        RSNeoConfig(attn_backend="flax")


def test_a_folder_of_the_first_s_layout_is_refused_with_the_reason_and_later_ones_load():
    fields = RSNeoConfig.from_preset("tiny").to_dict()
    first = {k: v for k, v in fields.items() if k != "spectral_layout"} | {"spectral_head_dim": 8}
    with pytest.raises(InputError, match="its own channels per head.*retrain it"):
        RSNeoConfig.from_dict(first)
    with pytest.raises(InputError, match="its own channels"):
        RSNeoConfig.from_dict(fields | {"spectral_layout": "channels"})
    # phase-layout folders written before the S-channel fields went still load (the fields were unused)
    between = fields | {"spectral_head_dim": 0, "rope_theta_s": 10000.0}
    assert RSNeoConfig.from_dict(between) == RSNeoConfig.from_dict(fields)
