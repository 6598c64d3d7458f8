"""Real releases: a NEO folder as NEO publishes it, Qwen3 with NEO's token order, and broken folders.

The NEO release folder is built from the golden weights: NEO's key names, the HF remote-code config (no
`extra_num_layers`, no image token ids) and a tokenizer that carries the image tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import AddedToken

from rsneo.cli import run_app
from rsneo.data.tokenizer import IMG_CONTEXT, IMG_END, IMG_START, load_tokenizer, train_tokenizer
from rsneo.model import RSNeoForCausalLM

from .conftest import golden_inputs

TEXTS = ["rivers and forests of the delta " * 20, "flooded fields near the coast", "a harbour at dusk"]


def tokenizer_with_image_tokens_at(first_id: int, order: tuple[str, ...]):
    """A byte-level BPE padded with plain tokens to `first_id` ids, then `order` added as specials."""
    tokenizer = train_tokenizer(TEXTS, 300, image_tokens=False)
    tokenizer.add_tokens([f"filler{i}" for i in range(first_id - len(tokenizer))])
    assert len(tokenizer) == first_id
    tokenizer.add_special_tokens({"extra_special_tokens": [AddedToken(t, special=True) for t in order]})
    return tokenizer


def release_config(golden_dir: Path) -> dict:
    golden = json.loads((golden_dir / "neo_tiny_config.json").read_text())
    llm = {k: v for k, v in golden["llm_config"].items() if k != "extra_num_layers"}
    llm |= {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "torch_dtype": "float32"}
    return {
        "architectures": ["NEOChatModel"],
        "auto_map": {"AutoConfig": "configuration_neo_chat.NEOChatConfig",
                     "AutoModel": "modeling_neo_chat.NEOChatModel"},
        "model_type": "neo_chat",
        "llm_config": llm,
        "vision_config": golden["vision_config"],
        "downsample_ratio": 0.5,
        "template": "neo1_0",
    }  # fmt: skip


@pytest.fixture()
def release(golden_dir, tmp_path) -> Path:
    """The golden NEO weights as a two-shard release folder with tokenizer files."""
    src = tmp_path / "neo"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(release_config(golden_dir)))
    # the golden ids: <img> 500, </img> 501, <IMG_CONTEXT> 502
    tokenizer_with_image_tokens_at(500, (IMG_START, IMG_END, IMG_CONTEXT)).save_pretrained(str(src))
    weights = load_file(str(golden_dir / "neo_tiny_weights.safetensors"))
    keys = sorted(weights)
    names = {k: f"model-0000{1 + (i >= 20)}-of-00002.safetensors" for i, k in enumerate(keys)}
    for name in set(names.values()):
        save_file({k: weights[k] for k in keys if names[k] == name}, str(src / name))
    (src / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": names}))
    return src


def said(capsys, text: str) -> bool:
    """Whether the error output contains `text` (the console wraps long lines anywhere)."""
    return "".join(text.split()) in "".join(capsys.readouterr().err.split())


def assert_nothing_written(tmp_path: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


@pytest.mark.parametrize("depth", [None, "1"])
def test_release_folder_reaches_the_golden_logits(release, golden_cases, tmp_path, depth):
    args = ["convert", "neo", str(release), str(tmp_path / "rs")]
    assert run_app(args + (["--prebuffer-layers", depth] if depth else [])) == 0
    model = RSNeoForCausalLM.from_pretrained(tmp_path / "rs")
    cfg = model.config
    assert (cfg.img_start_token_id, cfg.img_end_token_id, cfg.img_context_token_id) == (500, 501, 502)
    assert cfg.prebuffer_layers == 1  # inferred: 3 layers of width 64 is the tiny NEO (2 + 1 pre-buffer)
    for case in ("single", "packed"):
        with torch.no_grad():
            logits = model(golden_inputs(golden_cases, case, cfg)).logits[0]
        torch.testing.assert_close(logits, golden_cases[f"{case}.logits"], rtol=0, atol=1e-4)


def test_unknown_size_without_depth_is_refused(release, tmp_path, capsys, monkeypatch):
    from rsneo.model.config import PRESETS

    monkeypatch.delitem(PRESETS, "tiny")  # then 3 layers of width 64 match no published NEO size
    assert run_app(["convert", "neo", str(release), str(tmp_path / "rs")]) == 2
    assert said(capsys, "give the pre-buffer depth (--prebuffer-layers)")
    assert_nothing_written(tmp_path, tmp_path / "rs")


@pytest.mark.parametrize("problem", ["no tokenizer", "no image tokens", "ids disagree"])
def test_release_without_image_token_ids_is_refused(release, tmp_path, capsys, problem):
    if problem == "no tokenizer":
        for f in release.glob("tokenizer*"):
            f.unlink()
        expected = "tokenizer.json"
    elif problem == "no image tokens":
        train_tokenizer(TEXTS, 300, image_tokens=False).save_pretrained(str(release))
        expected = "refusing to guess"
    else:
        config = json.loads((release / "config.json").read_text())
        config["img_context_token_id"] = 501
        (release / "config.json").write_text(json.dumps(config))
        expected = "img_context_token_id is 501 but the tokenizer gives 502"
    assert run_app(["convert", "neo", str(release), str(tmp_path / "rs")]) == 2
    assert said(capsys, expected)
    assert_nothing_written(tmp_path, tmp_path / "rs")


def _break(folder: Path, problem: str, key: str) -> str:
    """Damage the shard holding `key`; returns what the error message must name."""
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shard = folder / index["weight_map"][key]
    if problem == "truncated":
        data = shard.read_bytes()
        shard.write_bytes(data[: len(data) // 2])
        return shard.name
    tensors = load_file(str(shard))
    if problem == "missing":
        del tensors[key]
    else:
        tensors[key] = tensors[key][:-1]
    save_file(tensors, str(shard))
    return key


@pytest.mark.parametrize("problem", ["missing", "misshapen", "truncated"])
def test_broken_neo_release_exits_2_and_writes_nothing(release, tmp_path, capsys, problem):
    named = _break(release, problem, "language_model.model.layers.2.mlp.up_proj.weight")
    assert run_app(["convert", "neo", str(release), str(tmp_path / "out" / "rs")]) == 2
    assert said(capsys, named)
    assert not (tmp_path / "out").exists()  # not even the parent folder it would have created


@pytest.fixture()
def qwen3_source(tmp_path) -> Path:
    """A tiny random Qwen3 saved by transformers in two shards, with a tokenizer lacking image tokens."""
    import transformers

    src = tmp_path / "qwen3"
    tokenizer = train_tokenizer(TEXTS, 300, image_tokens=False)
    tokenizer.save_pretrained(str(src))
    config = transformers.Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.Qwen3ForCausalLM(config).save_pretrained(str(src), max_shard_size="100KB")
    return src


def test_qwen3_gets_image_tokens_in_neo_order(qwen3_source, tmp_path):
    n = len(load_tokenizer(qwen3_source, add_missing=True)) - 3
    args = ["convert", "qwen3", str(qwen3_source), str(tmp_path / "rs"), "--prebuffer-layers", "1"]
    assert run_app(args) == 0
    cfg = RSNeoForCausalLM.from_pretrained(tmp_path / "rs").config
    # NEO's order after the base vocabulary: <IMG_CONTEXT>, <img>, </img> (Qwen3: 151669, 151670, 151671)
    assert (cfg.img_context_token_id, cfg.img_start_token_id, cfg.img_end_token_id) == (n, n + 1, n + 2)
    vocab = load_tokenizer(tmp_path / "rs").get_vocab()
    assert (vocab[IMG_CONTEXT], vocab[IMG_START], vocab[IMG_END]) == (n, n + 1, n + 2)


@pytest.mark.parametrize("problem", ["missing", "misshapen", "truncated"])
def test_broken_qwen3_exits_2_and_writes_nothing(qwen3_source, tmp_path, capsys, problem):
    named = _break(qwen3_source, problem, "model.layers.1.self_attn.k_proj.weight")
    args = ["convert", "qwen3", str(qwen3_source), str(tmp_path / "rs"), "--prebuffer-layers", "1"]
    assert run_app(args) == 2
    assert said(capsys, named)
    assert_nothing_written(tmp_path, tmp_path / "rs")


def test_existing_output_folder_is_not_overwritten(release, tmp_path):
    out = tmp_path / "rs"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert run_app(["convert", "neo", str(release), str(out)]) == 2
    assert (out / "notes.txt").read_text() == "mine" and len(list(out.iterdir())) == 1
