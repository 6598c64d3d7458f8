"""Exactly which parameters train in each stage (tiny model: 3 layers, the first is the pre-buffer)."""

from __future__ import annotations

import pytest

from rsneo.errors import InputError
from rsneo.train.config import load_config
from rsneo.train.freezing import apply_stage, trainable_names

NEW_POSITION_PARTS = [
    "q_proj_hw.weight", "k_proj_hw.weight", "q_norm_h.weight", "q_norm_w.weight", "k_norm_h.weight",
    "k_norm_w.weight", "spectral_frequencies",
]  # fmt: skip


def test_stage_one_trains_patch_embedding_prebuffer_and_new_position_parts_only(tiny_model):
    stage = load_config(["stage=stage1"]).stage
    apply_stage(tiny_model, list(stage.trainable))
    names = {n for n, _ in tiny_model.named_parameters()}
    vision = {n for n in names if n.startswith("backbone.vision.")}
    prebuffer = {n for n in names if n.startswith("backbone.layers.0.")}
    positions = {f"backbone.layers.{i}.self_attn.{p}" for i in (1, 2) for p in NEW_POSITION_PARTS}
    assert (
        vision and len(prebuffer) == 18
    )  # 6 projections (qkvo, hw), 6 QK-norms, S frequencies, 2 norms, 3 mlp
    assert trainable_names(tiny_model) == vision | prebuffer | positions
    frozen = names - trainable_names(tiny_model)
    for expected in [
        "backbone.embed_tokens.weight", "lm_head.weight", "backbone.norm.weight",
        "backbone.layers.1.self_attn.q_proj.weight", "backbone.layers.2.self_attn.k_norm.weight",
        "backbone.layers.2.mlp.down_proj.weight", "backbone.layers.1.input_layernorm.weight",
    ]:  # fmt: skip
        assert expected in frozen


@pytest.mark.parametrize("stage", ["stage2", "stage3"])
def test_later_stages_train_every_parameter(tiny_model, stage):
    apply_stage(tiny_model, load_config([f"stage={stage}"]).stage.trainable)
    assert trainable_names(tiny_model) == {n for n, _ in tiny_model.named_parameters()}


def test_unknown_role_is_an_input_error(tiny_model):
    with pytest.raises(
        InputError, match=r"stage.trainable: expected 'all' or roles from .* got \['encoder'\]"
    ):
        apply_stage(tiny_model, ["vision", "encoder"])


def test_training_only_modules_always_train_beside_a_frozen_post_llm(tiny_model, tokenizer):
    from omegaconf import OmegaConf

    from rsneo.train.module import RSNeoTraining
    from rsneo.train.run import build_segmentation_head

    cfg = OmegaConf.to_container(load_config(["experiment=smoke", "stage=stage1"]), resolve=True)
    module = RSNeoTraining(tiny_model, cfg, tokenizer, build_segmentation_head(cfg, tiny_model))
    names = trainable_names(module)
    extra = {n for n in names if not n.startswith("model.")}
    assert extra == {n for n, _ in module.named_parameters() if n.startswith(("band_decoder.", "seg_head."))}
    assert "model.lm_head.weight" not in names and "model.backbone.layers.0.mlp.up_proj.weight" in names
