"""Each objective: one optimisation step on a fixed batch lowers its loss (same batch, same hidden tokens)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from rsneo.train.config import load_config
from rsneo.train.datamodule import collate
from rsneo.train.module import RSNeoTraining
from rsneo.train.objectives import language_model_loss, lm_targets
from rsneo.train.run import build_segmentation_head
from rsneo.train.sentences import class_share_sentence


def training_module(model, tokenizer, objective: str, stage: str) -> RSNeoTraining:
    cfg = OmegaConf.to_container(load_config(["experiment=smoke", f"stage={stage}"]), resolve=True)
    for name in cfg["objectives"]:
        cfg["objectives"][name]["weight"] = 1.0 if name == objective else 0.0
    return RSNeoTraining(model, cfg, tokenizer, build_segmentation_head(cfg, model))


@pytest.mark.parametrize(
    ("objective", "stage"),
    [("masked_bands", "stage1"), ("lm", "stage2"), ("segmentation", "stage1")],
)
def test_one_step_lowers_the_loss_on_a_fixed_batch(
    objective, stage, tiny_model, tokenizer, flood_samples, image_tokens
):
    torch.manual_seed(0)
    module = training_module(tiny_model, tokenizer, objective, stage)
    batch = collate(flood_samples[10:14], image_tokens, pad_id=tokenizer.pad_token_id)
    # The run's own AdamW and parameter groups. Its first step moves every parameter by about the learning
    # rate (Adam normalises the gradient), which on a random tiny model can overshoot; a descent direction
    # must lower the loss for a small enough step, so the test scales the learning rate down (5e-4 -> 1e-7;
    # at 1e-5 the masked-band loss of stage 1 rises, at 1e-6 it is flat: the step is still past the descent).
    optimizer = module.configure_optimizers()["optimizer"]
    for group in optimizer.param_groups:
        group["lr"] *= 2e-4
    before = module.losses(batch, torch.Generator().manual_seed(0))
    assert set(before) == {objective}
    optimizer.zero_grad()
    before[objective].backward()
    optimizer.step()
    with torch.no_grad():
        after = module.losses(batch, torch.Generator().manual_seed(0))
    assert after[objective] < before[objective]


def test_language_model_loss_counts_only_labelled_tokens():
    head = torch.nn.Linear(2, 4, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.0, 0.0], [0.0, 0.0], [10.0, 0.0], [0.0, 0.0]]))
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]])  # (batch, tokens, hidden)

    def loss(labels: torch.Tensor) -> torch.Tensor:
        rows, cols, targets = lm_targets(labels)  # on the host, as the step plans it
        return language_model_loss(head, hidden[rows, cols], targets)

    assert loss(torch.tensor([[2, -100, -100]])) < 1e-3  # the two unlabelled positions are ignored
    # a token whose logits are all 0: log(4)
    assert torch.isclose(loss(torch.tensor([[-100, 0, -100]])), torch.log(torch.tensor(4.0)))
    assert lm_targets(torch.full((2, 3), -100)) is None  # no target: no LM loss in the step


def test_label_sentences_are_next_token_targets_of_the_text_only(flood_samples, image_tokens, tokenizer):
    batch = collate(flood_samples[:2], image_tokens, pad_id=tokenizer.pad_token_id)
    inputs = batch.inputs
    row = inputs.input_ids[0]
    targets = inputs.labels[0]
    learned = (targets >= 0).nonzero().flatten()
    end = int((row == image_tokens.end).nonzero()[0])
    assert int(learned.min()) == end  # `</img>` predicts the first word; nothing inside the image is a target
    assert torch.equal(targets[learned], row[learned + 1])
    expected = class_share_sentence(flood_samples[0].chip.labels.numpy(), {0: "land", 1: "water"})
    assert tokenizer.decode(row[learned + 1]) == expected + "<|endoftext|>"
    assert batch.segmentation is not None and batch.segmentation.labels.shape == (2, 64, 64)
    assert batch.segmentation.class_names == ("land", "water")
