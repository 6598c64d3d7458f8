"""`rsneo.train.module`: the Lightning module's losses on a real batch are finite and weighted as configured,
one optimisation step with a small learning rate lowers their weighted sum, the optimizer holds only trainable
parameters, and a checkpoint's record holds only plain types."""

from __future__ import annotations

import io

import pytest
import torch
from omegaconf import OmegaConf

from rsneo.train.change import build_change_head
from rsneo.train.config import load_config
from rsneo.train.datamodule import collate
from rsneo.train.module import RSNeoTraining
from rsneo.train.run import build_segmentation_head


def run_config(*overrides: str) -> dict:
    return OmegaConf.to_container(load_config(["experiment=smoke", *overrides]), resolve=True)


def module_for(model, tokenizer, cfg: dict) -> RSNeoTraining:
    return RSNeoTraining(
        model, cfg, tokenizer, build_segmentation_head(cfg, model), build_change_head(cfg, model)
    )


@pytest.fixture()
def batch(flood_samples, image_tokens, tokenizer):
    return collate(flood_samples[10:12], image_tokens, pad_id=tokenizer.pad_token_id)


def test_every_objective_with_data_gives_a_finite_loss_and_the_total_is_their_weighted_sum(
    tiny_model, tokenizer, batch
):
    cfg = run_config("objectives.lm.weight=0.5", "objectives.segmentation.weight=2.0")
    module = module_for(tiny_model, tokenizer, cfg)
    losses = module.losses(batch, torch.Generator().manual_seed(0))
    expected = {"masked_bands", "lm", "segmentation"} | ({"change"} if batch.change else set())
    assert set(losses) == expected
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values()), losses
    total = module.weighted_total(losses)
    want = sum(module.weights[name] * value for name, value in losses.items())
    torch.testing.assert_close(total, want, rtol=1e-6, atol=0)
    assert module.weights["lm"] == 0.5 and module.weights["segmentation"] == 2.0


def test_a_step_with_a_small_learning_rate_lowers_the_weighted_total(tiny_model, tokenizer, batch):
    """The run's own optimizer and schedule; the learning rate scaled down (Adam's first step moves every
    parameter by about the learning rate, which on a random tiny model can overshoot)."""
    torch.manual_seed(0)
    module = module_for(tiny_model, tokenizer, run_config("objectives.change.weight=0"))  # the step's cost
    optimizer = module.configure_optimizers()["optimizer"]
    for group in optimizer.param_groups:
        group["lr"] *= 0.02
    before = module.weighted_total(module.losses(batch, torch.Generator().manual_seed(0)))
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = module.weighted_total(module.losses(batch, torch.Generator().manual_seed(0)))
    assert after < before


def test_the_same_seed_draws_the_same_masks_and_another_seed_others(tiny_model, tokenizer, batch):
    only_masking = [f"objectives.{name}.weight=0" for name in ("lm", "segmentation", "change")]
    cfg = run_config(*only_masking)
    module = module_for(tiny_model, tokenizer, cfg)
    with torch.no_grad():
        a = module.losses(batch, module.step_generator())["masked_bands"]
        b = module.losses(batch, module.step_generator())["masked_bands"]
        module.run_config = {**cfg, "seed": int(cfg["seed"]) + 1}
        c = module.losses(batch, module.step_generator())["masked_bands"]
    assert torch.equal(a, b)  # a resumed step draws exactly what the uninterrupted one drew
    assert not torch.equal(a, c)


def test_optimizer_holds_only_the_stages_trainable_parameters_and_steps_its_schedule(tiny_model, tokenizer):
    module = module_for(tiny_model, tokenizer, run_config("stage.lr=0.002"))
    configured = module.configure_optimizers()
    in_optimizer = {id(p) for g in configured["optimizer"].param_groups for p in g["params"]}
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    assert in_optimizer == trainable and 0 < len(trainable) < len(list(module.parameters()))
    assert configured["lr_scheduler"]["interval"] == "step"
    assert configured["optimizer"].param_groups[0]["lr"] == pytest.approx(0.002 / 2)  # warm-up step 0 of 2


def test_zero_weight_objectives_build_no_head(tiny_model, tokenizer):
    cfg = run_config("objectives.masked_bands.weight=0", "objectives.change.weight=0")
    module = module_for(tiny_model, tokenizer, cfg)
    assert module.band_decoder is None and module.change_head is None and module.seg_head is not None


def test_checkpoint_record_is_plain_types_only(tiny_model, tokenizer):
    module = module_for(tiny_model, tokenizer, run_config())
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    record = checkpoint["rsneo"]
    assert record["run_config"]["name"] == "smoke"
    assert record["model_config"]["hidden_size"] == tiny_model.config.hidden_size
    assert record["seg_head_config"] is not None and record["change_head_config"] is not None
    assert "tokenizer.json" in record["tokenizer_files"]
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True) == checkpoint  # no object needs unpickling
