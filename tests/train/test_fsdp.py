"""FSDP from the meta device: NEO-2.2B / NEO-9B built on `meta` have exactly the parameters of Qwen3-1.7B /
Qwen3-8B plus their pre-buffer layers and NEO's and rsneo's additions (docs/training.md writes the sums
out); materialising a meta model unit by unit gives the model's own initialisation; two gloo ranks set up a
NEO-9B-shaped run under Lightning's FSDP strategy without either rank ever holding the whole model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rsneo.model.causal_lm import RSNeoForCausalLM
from rsneo.model.config import RSNeoConfig
from rsneo.train.scale import materialize_unit, tag_for_materialization

WORKER = Path(__file__).with_name("fsdp_worker.py")


def qwen3_layer(hidden: int, inter: int, heads: int, kv_heads: int, head_dim: int = 128) -> int:
    """One Qwen3 decoder layer: q/k/v/o projections, q/k RMSNorms over a head, SwiGLU, two RMSNorms."""
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2 + 2 * head_dim
    return attention + 3 * hidden * inter + 2 * hidden


def qwen3(vocab: int, hidden: int, inter: int, layers: int, heads: int, kv: int, tied: bool) -> int:
    return vocab * hidden * (1 if tied else 2) + layers * qwen3_layer(hidden, inter, heads, kv) + hidden


# Qwen3's published configurations (config.json of Qwen/Qwen3-1.7B and Qwen/Qwen3-8B)
QWEN3_1_7B = dict(vocab=151936, hidden=2048, inter=6144, layers=28, heads=16, kv=8, tied=True)
QWEN3_8B = dict(vocab=151936, hidden=4096, inter=12288, layers=36, heads=32, kv=8, tied=False)


def neo_additions(config: RSNeoConfig) -> dict[str, int]:
    """What NEO and rsneo add to every layer, and the patch embedding (names as in rsneo.model)."""
    h, d, s = config.hidden_size, config.head_dim, config.spectral_head_dim
    # q/k_proj_hw and four half-head norms; q/k_proj_s and their norms
    hw = h * config.num_heads * d + h * config.num_kv_heads * d + 4 * (d // 2)
    spectral = h * config.num_heads * s + h * config.num_kv_heads * s + 2 * s
    v, p, m = config.vision_hidden_size, config.patch_size, config.merge_size
    kernels = (len(config.spectral_anchors_um) + 4 + 23) * v * p * p  # anchors, SAR kernels, corrections
    vision = kernels + v + h * v * m * m + h  # + patch bias, the 2x2 merging conv and its bias
    return {"hw": hw, "spectral": spectral, "vision": vision}


@pytest.mark.parametrize(("preset", "qwen", "total"), [
    ("neo-2.2b", QWEN3_1_7B, 1_720_574_976), ("neo-9b", QWEN3_8B, 8_190_735_360),
])  # fmt: skip
def test_presets_built_on_meta_count_exactly_qwen3_plus_prebuffer_and_additions(preset, qwen, total):
    assert qwen3(**qwen) == total  # the published Qwen3 sizes (1.72 B tied, 8.19 B untied)
    config = RSNeoConfig.from_preset(preset)
    with torch.device("meta"):
        model = RSNeoForCausalLM(config)
    assert all(p.is_meta for p in model.parameters())  # shapes only: nothing allocated
    assert config.num_layers - config.prebuffer_layers == qwen["layers"]
    extra = neo_additions(config)
    layer = qwen3_layer(qwen["hidden"], qwen["inter"], qwen["heads"], qwen["kv"])
    expected = (
        total + config.prebuffer_layers * layer
        + config.num_layers * (extra["hw"] + extra["spectral"]) + extra["vision"]
    )  # fmt: skip
    assert sum(p.numel() for p in model.parameters()) == expected


def test_materialising_a_meta_model_gives_its_own_initialisation_and_keeps_ties():
    config = RSNeoConfig.from_preset("tiny", tie_word_embeddings=True)
    torch.manual_seed(0)
    reference = RSNeoForCausalLM(config)
    with torch.device("meta"):
        model = RSNeoForCausalLM(config)
    tag_for_materialization(model, model.init_module)
    materialize_unit(model)
    assert model.lm_head.weight is model.backbone.embed_tokens.weight
    mine, theirs = dict(model.named_parameters()), dict(reference.named_parameters())
    assert mine.keys() == theirs.keys()
    for name, param in mine.items():
        param, ref = param.detach(), theirs[name].detach()
        assert param.shape == ref.shape and param.device.type == "cpu", name
        if bool((ref == ref.flatten()[0]).all()):  # constants (norms at 1, S gate and biases at 0): exact
            assert torch.equal(param, ref), name
        else:  # random: the same distribution; 0.25 x std is far above the sampling error of >= 512 values
            assert abs(float(param.std()) - float(ref.std())) < 0.25 * float(ref.std()), name
            assert abs(float(param.mean())) < 0.25 * float(ref.std()), name


@pytest.mark.slow
def test_two_gloo_ranks_set_up_a_neo9b_shaped_run_without_the_whole_model(shared_data, tokenizer, tmp_path):
    """NEO-9B's structure (42 layers, 6 pre-buffer, untied head, S axis) at 1024 wide with a 4096 vocabulary:
    on a CPU the local shard itself lives in host memory, and NEO-9B's (21 GB per rank of 2) does not fit
    this machine, so the set-up is shown at a size where the whole model (2.4 GB) and a shard (1.2 GB) differ
    by far more than the allocator's noise."""
    tokenizer.save_pretrained(str(tmp_path / "tokenizer"))
    overrides = [
        "experiment=smoke", "objectives=pretrain", "data=sen1floods11", "model=neo-9b", "model.compile=false",
        "+model.overrides={hidden_size:1024,intermediate_size:3072,num_heads:8,num_kv_heads:2,vocab_size:4096}",
        "trainer=fsdp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
        "trainer.num_workers=0", "trainer.progress_bar=false", "trainer.tensorboard=false",
        "loss_curve=false",
        f"tokenizer={tmp_path / 'tokenizer'}", f"data_root={shared_data}",
    ]  # fmt: skip
    env = {
        **os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "MALLOC_MMAP_THRESHOLD_": "1048576",  # freed unit buffers go back to the system: RSS is what is held
    }  # fmt: skip
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=0",
        "--rdzv_backend=c10d", "--rdzv_endpoint=localhost:0", str(WORKER), str(tmp_path / "out"), *overrides,
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / "out" / f"rank{r}.json").read_text()) for r in (0, 1)]
    total = ranks[0]["total_numel"]
    assert total > 600_000_000 and sum(r["local_numel"] for r in ranks) == total  # every parameter, once
    for rank in ranks:
        whole, shard = 4 * total, 4 * rank["local_numel"]  # fp32 bytes
        assert abs(shard - whole / 2) < 0.02 * whole
        grown = rank["peak"] - rank["rss_before"]  # the set-up's peak, from a model with no storage at all
        # the rank's shard plus a few units in flight (each unit is ~2% of the model); the whole model
        # would need >= 0.5 x whole more on top of its shard
        assert grown < shard + 0.15 * whole, (grown / whole, shard / whole)
        assert rank["norms_are_one"] and rank["s_gate_is_shut"] and not rank["meta_left"]
        # normal(0, 0.02), not kaiming's 0.018
        assert all(abs(std - 0.02) < 2e-4 for std in rank["q_proj_std"])
    assert ranks[0]["q_proj_std"]  # rank 0 holds the first half of every layer, q_proj included
