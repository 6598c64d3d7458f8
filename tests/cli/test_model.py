"""`rsneo convert qwen3|neo` (rsneo.cli.model): the command writes a folder and says what it made; bad sources
exit 2 naming them, with nothing written."""

from __future__ import annotations

import json

import torch
import transformers

from rsneo.cli import run_app
from rsneo.model import RSNeoForCausalLM
from rsneo.model.tokenizer import train_tokenizer


def said(capsys) -> tuple[str, str]:
    out = capsys.readouterr()
    return " ".join(out.out.split()), " ".join(out.err.split())


def test_convert_qwen3_reports_layers_prebuffer_and_vocabulary(tmp_path, capsys):
    src = tmp_path / "qwen3"
    train_tokenizer(["rivers and forests of the delta " * 10], 280).save_pretrained(str(src))
    config = transformers.Qwen3Config(
        vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.Qwen3ForCausalLM(config).save_pretrained(str(src))
    dst = tmp_path / "rs"
    argv = ["convert", "qwen3", str(src), str(dst), "--prebuffer-layers", "1", "--vision-hidden", "24"]
    assert run_app(argv) == 0
    out, _ = said(capsys)
    model = RSNeoForCausalLM.from_pretrained(dst)
    cfg = model.config
    assert (cfg.num_layers, cfg.prebuffer_layers) == (3, 1)  # Qwen3's 2 layers after 1 pre-buffer layer
    assert out == f"wrote {dst}: 3 layers (1 pre-buffer), vocab {cfg.vocab_size}"
    assert cfg.vocab_size >= 300 and json.loads((dst / "config.json").read_text())


def test_convert_errors_exit_2(tmp_path, capsys):
    assert run_app(["convert", "qwen3", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "nowhere" in said(capsys)[1]
    (tmp_path / "neo").mkdir()
    (tmp_path / "neo" / "config.json").write_text("{}")
    assert run_app(["convert", "neo", str(tmp_path / "neo"), str(tmp_path / "out")]) == 2
    assert str(tmp_path / "neo") in said(capsys)[1]
    assert not (tmp_path / "out").exists()


def test_convert_alone_shows_its_two_sources(capsys):
    assert run_app(["convert", "--help"]) == 0
    out, _ = said(capsys)
    assert "qwen3" in out and "neo" in out
