"""Conversion against the real thing: a tiny random Qwen3 saved by transformers itself, and NEO."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from rsneo.cli import run_app
from rsneo.model import RSNeoForCausalLM
from rsneo.model.tokenizer import load_tokenizer, train_tokenizer

QWEN_VOCAB = 290


@pytest.fixture(scope="module")
def qwen3_folder(tmp_path_factory):
    """A random Qwen3ForCausalLM (non-trivial norms) and an offline tokenizer, saved by transformers."""
    folder = tmp_path_factory.mktemp("qwen3")
    tokenizer = train_tokenizer(
        ["rivers and forests of the delta " * 20, "flooded fields near the coast"], 300
    )
    tokenizer.save_pretrained(str(folder))
    config = transformers.Qwen3Config(
        vocab_size=QWEN_VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, rope_theta=50_000.0, tie_word_embeddings=False, rms_norm_eps=1e-6,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.Qwen3ForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    model.save_pretrained(str(folder))
    return folder, model


def test_depth_zero_gives_transformers_logits(qwen3_folder, tmp_path):
    src, hf_model = qwen3_folder
    assert run_app(["convert", "qwen3", str(src), str(tmp_path / "rs"), "--prebuffer-layers", "0"]) == 0
    model = RSNeoForCausalLM.from_pretrained(tmp_path / "rs")
    ids = torch.tensor([[15, 17, 200, 31, 99, 42, 7, 250], [11, 12, 13, 14, 15, 16, 17, 18]])
    with torch.no_grad():
        ours = model(input_ids=ids).logits
        theirs = hf_model(input_ids=ids).logits
    torch.testing.assert_close(ours[..., :QWEN_VOCAB], theirs, rtol=0, atol=1e-5)


def test_tokenizer_gets_image_tokens_and_embeddings_grow(qwen3_folder, tmp_path):
    src, _ = qwen3_folder
    assert run_app(["convert", "qwen3", str(src), str(tmp_path / "rs"), "--prebuffer-layers", "1"]) == 0
    tokenizer = load_tokenizer(tmp_path / "rs")
    config = json.loads((tmp_path / "rs" / "config.json").read_text())
    vocab = tokenizer.get_vocab()
    assert config["img_context_token_id"] == vocab["<IMG_CONTEXT>"]
    assert config["img_start_token_id"] == vocab["<img>"] and config["img_end_token_id"] == vocab["</img>"]
    assert config["vocab_size"] == len(tokenizer) > QWEN_VOCAB
    model = RSNeoForCausalLM.from_pretrained(tmp_path / "rs")
    assert model.backbone.embed_tokens.weight.shape[0] == len(tokenizer)


def test_depth_two_shifts_layers_with_identical_tensors(qwen3_folder, tmp_path):
    src, hf_model = qwen3_folder
    assert run_app(["convert", "qwen3", str(src), str(tmp_path / "rs"), "--prebuffer-layers", "2"]) == 0
    model = RSNeoForCausalLM.from_pretrained(tmp_path / "rs")
    assert model.config.num_layers == 4 and model.config.prebuffer_layers == 2
    ours = model.state_dict()
    for name, tensor in hf_model.state_dict().items():
        if name.startswith("model.layers."):
            i, rest = name.split(".", 3)[2:]
            assert torch.equal(ours[f"backbone.layers.{int(i) + 2}.{rest}"], tensor), name
    attn = model.backbone.layers[2].self_attn
    q = hf_model.model.layers[0].self_attn.q_proj.weight.view(4, 16, 64)
    a, c = q[:, 0:4], q[:, 8:12]
    assert torch.equal(attn.q_proj_hw.weight.view(4, 16, 64), torch.cat((a, c, a, c), 1))
    assert not attn.k_proj_hw.weight.any()  # H/W keys shut
    assert model.config.spectral_layout == "phase" and model.config.qk_dim == 2 * 16  # S adds no width
    for layer in model.backbone.layers:  # the S phase starts at zero everywhere, fresh pre-buffer included
        assert (
            layer.self_attn.spectral_frequencies.shape == (16,)
            and not layer.self_attn.spectral_frequencies.any()
        )
    assert model.backbone.layers[0].self_attn.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.2)
