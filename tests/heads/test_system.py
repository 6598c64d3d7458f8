"""Model folders: heads round-trip through heads.safetensors + heads.json; bad folders are named."""

from __future__ import annotations

import json

import pytest
import torch

from rsneo.errors import InputError
from rsneo.heads.system import HEADS_JSON, HEADS_WEIGHTS, load_heads, load_system, random_system, save_heads


def test_heads_round_trip(tmp_path):
    system = random_system(seed=3)
    with torch.no_grad():
        system.segmentation.log_scale.fill_(1.234)
        system.change.threshold.fill_(0.05)
    save_heads(tmp_path, system.segmentation, system.change)
    assert sorted(p.name for p in tmp_path.iterdir()) == [HEADS_JSON, HEADS_WEIGHTS]
    assert json.loads((tmp_path / HEADS_JSON).read_text())["segmentation"]["hidden_size"] == 64
    seg, change, loaded = load_heads(tmp_path, hidden_size=64)
    assert loaded == ("segmentation", "change")
    for a, b in ((system.segmentation, seg), (system.change, change)):
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            torch.testing.assert_close(x, y, msg=name)


def test_load_system_reads_a_saved_folder(tiny_model_dir, tiny_system):
    assert tiny_system.folder == tiny_model_dir
    assert tiny_system.trained_heads == ("segmentation", "change")
    assert tiny_system.config.img_context_token_id == tiny_system.tokenizer.convert_tokens_to_ids(
        "<IMG_CONTEXT>"
    )


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match=r"empty: expected a model folder with config.json.*--model"):
        load_system(tmp_path / "empty")


def test_heads_without_json_are_fresh(tmp_path):
    seg, change, loaded = load_heads(tmp_path, hidden_size=32)
    assert loaded == () and seg.config.hidden_size == 32


def test_a_truncated_heads_file_is_named_not_an_internal_error(tmp_path):
    system = random_system(seed=3)
    save_heads(tmp_path, system.segmentation, system.change)
    weights = tmp_path / HEADS_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(InputError, match=rf"{HEADS_WEIGHTS}: cannot read the heads"):
        load_heads(tmp_path, system.config.hidden_size)
