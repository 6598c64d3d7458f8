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
