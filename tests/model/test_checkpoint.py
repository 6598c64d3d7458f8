"""Checkpoint folders: sharded round trip, lazy loading, and one clear error per bad tensor."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from rsneo.errors import InputError
from rsneo.model import RSNeoConfig, RSNeoForCausalLM


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = RSNeoForCausalLM(RSNeoConfig.from_preset("tiny")).eval()
    model.save_pretrained(tmp_path / "m", max_shard_bytes=200_000)
    return model, tmp_path / "m"


def test_sharded_round_trip_gives_identical_logits(saved):
    model, folder = saved
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert not list(folder.glob(".tmp*"))
    loaded = RSNeoForCausalLM.from_pretrained(folder)
    ids = torch.tensor([[1, 2, 3, 4]])
    original, reloaded = model.state_dict(), loaded.state_dict()
    assert original.keys() == reloaded.keys()
    assert all(torch.equal(original[k], reloaded[k]) for k in original)  # stored values: copied bit for bit
    with torch.no_grad():  # computed values: same weights, same kernels; tolerance only for reduction order
        before, after = model(input_ids=ids).logits, loaded(input_ids=ids).logits
        torch.testing.assert_close(before, after, rtol=0, atol=1e-6)
    assert not any(p.is_meta for p in loaded.parameters())


def test_tied_embeddings_are_stored_once_and_tied_after_loading(tmp_path):
    model = RSNeoForCausalLM(RSNeoConfig.from_preset("tiny", tie_word_embeddings=True))
    model.save_pretrained(tmp_path)
    assert "lm_head.weight" not in load_file(str(tmp_path / "model.safetensors"))
    loaded = RSNeoForCausalLM.from_pretrained(tmp_path)
    assert loaded.lm_head.weight is loaded.backbone.embed_tokens.weight


def _edit_shard(folder, key, new):
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shard = folder / index["weight_map"][key]
    tensors = load_file(str(shard))
    if new is None:
        del tensors[key]
    else:
        tensors[key] = new
    save_file(tensors, str(shard))


def test_missing_tensor_is_named(saved):
    _, folder = saved
    _edit_shard(folder, "backbone.layers.1.self_attn.k_proj_hw.weight", None)
    with pytest.raises(InputError, match=r"'backbone\.layers\.1\.self_attn\.k_proj_hw\.weight' is missing"):
        RSNeoForCausalLM.from_pretrained(folder)


def test_misshapen_tensor_is_named(saved):
    _, folder = saved
    _edit_shard(folder, "backbone.norm.weight", torch.ones(63))
    with pytest.raises(InputError, match=r"'backbone\.norm\.weight' has shape \[63\], expected \[64\]"):
        RSNeoForCausalLM.from_pretrained(folder)


def test_not_a_model_folder(tmp_path):
    with pytest.raises(InputError, match="config.json"):
        RSNeoForCausalLM.from_pretrained(tmp_path)


def test_load_in_another_dtype_and_missing_shard(saved):
    model, folder = saved
    half = RSNeoForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    assert torch.equal(half.backbone.norm.weight, model.backbone.norm.weight.to(torch.bfloat16))
    next(folder.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(InputError, match="model-00002-of-"):
        RSNeoForCausalLM.from_pretrained(folder)


def test_a_truncated_weights_file_is_named_not_an_internal_error(saved):
    _, folder = saved
    shard = sorted(folder.glob("model-*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:100])  # a download cut short
    with pytest.raises(
        InputError, match=rf"{shard.name}: cannot read its tensors; the file may be truncated"
    ):
        RSNeoForCausalLM.from_pretrained(folder)


@pytest.mark.parametrize(
    ("index_text", "expected"),
    [
        ("not json", r"model.safetensors.index.json: not a JSON file .*expected a safetensors index"),
        ('{"metadata": {}}', r"index.json: expected a JSON object with a 'weight_map'"),
        ('{"weight_map": {"a": "../elsewhere.safetensors"}}', r"shard '../elsewhere.safetensors' is outside"),
        ('{"weight_map": {"a": "/etc/x.safetensors"}}', r"shard '/etc/x.safetensors' is outside the model"),
    ],
)
def test_an_index_that_is_not_json_or_points_outside_the_folder_is_refused(saved, index_text, expected):
    """An index may come from anyone: shards are plain file names inside the model folder, never `../` or
    absolute paths (which would load tensors from anywhere on the machine)."""
    _, folder = saved
    outside = folder.parent / "elsewhere.safetensors"
    outside.write_bytes((next(folder.glob("model-00001-*.safetensors"))).read_bytes())
    (folder / "model.safetensors.index.json").write_text(index_text)
    with pytest.raises(InputError, match=expected):
        RSNeoForCausalLM.from_pretrained(folder)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("num_layers", "six", r"'num_layers' is 'six'; expected an integer"),
        ("num_layers", 2.5, r"'num_layers' is 2.5; expected an integer"),
        ("tie_word_embeddings", 1, r"'tie_word_embeddings' is 1; expected true or false"),
        ("rope_theta", "1e6", r"'rope_theta' is '1e6'; expected a number"),
        ("eos_token_id", "0", r"'eos_token_id' is '0'; expected an integer or null"),
        ("spectral_anchors_um", [0.4, "x"], r"'spectral_anchors_um' .*expected a list of a number"),
    ],
)
def test_a_config_value_of_the_wrong_type_is_named(saved, key, value, expected):
    _, folder = saved
    config = json.loads((folder / "config.json").read_text())
    config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=rf"config.json: config: {expected}"):
        RSNeoForCausalLM.from_pretrained(folder)


def test_a_config_that_is_not_json_is_named(saved):
    _, folder = saved
    (folder / "config.json").write_text("{truncated")
    with pytest.raises(InputError, match=r"config.json: not a JSON file .*expected an rsneo config.json"):
        RSNeoForCausalLM.from_pretrained(folder)
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(InputError, match=r"config.json: expected a JSON object of config keys, found list"):
        RSNeoForCausalLM.from_pretrained(folder)
