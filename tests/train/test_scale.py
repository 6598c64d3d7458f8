"""Scale options: activation checkpointing changes memory, not numbers or names; strategies from configs."""

from __future__ import annotations

import pytest
import torch

from rsneo.train.config import load_config
from rsneo.train.datamodule import collate
from rsneo.train.scale import build_strategy, enable_activation_checkpointing


def test_activation_checkpointing_gives_the_same_loss_and_gradients(tiny_model, flood_samples, image_tokens):
    inputs = collate(flood_samples[:2], image_tokens, pad_id=0).inputs
    names = [n for n, _ in tiny_model.named_parameters()]

    def loss_and_grads():
        tiny_model.zero_grad()
        loss = tiny_model(inputs).loss
        loss.backward()
        return loss.detach(), {
            n: p.grad.clone() for n, p in tiny_model.named_parameters() if p.grad is not None
        }

    plain_loss, plain_grads = loss_and_grads()
    assert enable_activation_checkpointing(tiny_model) == tiny_model.config.num_layers
    assert enable_activation_checkpointing(tiny_model) == 0  # already wrapped
    loss, grads = loss_and_grads()
    assert [n for n, _ in tiny_model.named_parameters()] == names
    assert torch.allclose(loss, plain_loss, atol=1e-6)
    assert grads.keys() == plain_grads.keys()
    assert all(torch.allclose(grads[n], plain_grads[n], atol=1e-6) for n in grads)


def test_strategies_built_from_trainer_configs():
    from lightning.pytorch.strategies import DDPStrategy, ModelParallelStrategy

    ddp = load_config(["trainer=ddp", "trainer.accelerator=cpu"])
    strategy = build_strategy(ddp.trainer)
    assert isinstance(strategy, DDPStrategy) and strategy._process_group_backend == "gloo"
    fsdp = load_config(["trainer=fsdp", "model=neo-2.2b"])
    sharded = build_strategy(fsdp.trainer)  # FSDP2, every device a data-parallel rank
    assert isinstance(sharded, ModelParallelStrategy) and sharded.process_group_backend is None  # NCCL
    cpu = load_config(["trainer=fsdp", "trainer.accelerator=cpu"])
    assert build_strategy(cpu.trainer).process_group_backend == "gloo"
    assert sharded._save_distributed_checkpoint  # trainer.fsdp.state_dict_type: sharded
    full = load_config(["trainer=fsdp", "trainer.fsdp.state_dict_type=full"])
    assert not build_strategy(full.trainer)._save_distributed_checkpoint
    assert build_strategy(load_config([]).trainer) == "auto"


def test_fsdp_options_in_fsdp2_terms_and_unknown_ones_refused():
    from rsneo.errors import InputError
    from rsneo.train.scale import fsdp_options

    options = fsdp_options(
        {"sharding_strategy": "SHARD_GRAD_OP", "state_dict_type": "sharded", "cpu_offload": True}
    )
    assert options == {"reshard_after_forward": False, "sharded_checkpoints": True, "cpu_offload": True}
    with pytest.raises(InputError, match="sharding_strategy must be one of .*'HYBRID_SHARD'"):
        fsdp_options(
            {"sharding_strategy": "HYBRID_SHARD", "state_dict_type": "sharded", "cpu_offload": False}
        )


def test_a_step_wider_than_max_tokens_stops_with_a_message(
    tiny_model, tokenizer, flood_samples, image_tokens
):
    from rsneo.errors import InputError
    from rsneo.train.module import RSNeoTraining

    config = load_config(["objectives=pretrain", "model.max_tokens=16", "data_root=.", "out_dir=."])
    module = RSNeoTraining(tiny_model, config, tokenizer)
    batch = collate(flood_samples[:2], image_tokens, pad_id=0)
    with pytest.raises(
        InputError, match=r"model.max_tokens: a training step packs rows of \d+ tokens, more than the 16"
    ):
        module.plan(batch, torch.Generator().manual_seed(0))
