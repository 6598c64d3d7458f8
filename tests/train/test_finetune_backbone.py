"""What `--train` unfreezes (rsneo.train.finetune_backbone), and LoRA adapters merged into plain weights."""

from __future__ import annotations

import pytest
import torch

from rsneo.data.documents import image_documents
from rsneo.errors import InputError
from rsneo.heads.system import random_system
from rsneo.model.inputs import ImageInput
from rsneo.train.finetune_backbone import LoRALinear, merge_lora, set_trainable


@pytest.fixture
def model():
    return random_system(seed=2).model.train()


def trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_heads_freeze_the_whole_backbone(model):
    assert set_trainable(model, "heads") == "the head only (backbone frozen)"
    assert trainable(model) == set()


def test_prebuffer_trains_the_patch_embedding_and_the_prebuffer_layers(model):
    set_trainable(model, "prebuffer")
    groups = model.parameter_groups()
    assert trainable(model) == set(groups["vision"]) | set(groups["prebuffer"])


def test_last_n_trains_the_last_layers_and_the_final_norm(model):
    layers = model.config.num_layers
    set_trainable(model, "last-1")
    names = trainable(model)
    assert names and all(n.startswith((f"backbone.layers.{layers - 1}.", "backbone.norm.")) for n in names)
    set_trainable(model, "all")
    assert trainable(model) == {n for n, _ in model.named_parameters()}


def test_unknown_modes_are_refused_with_the_choices(model):
    for mode in ("everything", "last-0", f"last-{model.config.num_layers + 1}"):
        with pytest.raises(InputError, match="--train: expected heads, prebuffer, last-N"):
            set_trainable(model, mode)


def test_lora_trains_adapters_only_starts_from_the_model_and_merges_into_plain_weights(model):
    images = [
        [[ImageInput(torch.randn(3, 64, 64), torch.tensor([0.665, 0.56, 0.49]), ("red", "green", "blue"))]]
    ]
    inputs = image_documents(images, model.config)
    model.eval()
    before = model.backbone(inputs).last_hidden_state
    plain_keys = set(model.state_dict())
    sentence = set_trainable(model, "lora", lora_rank=4)
    assert "rank-4 LoRA adapters" in sentence
    assert trainable(model) and all(n.endswith((".down", ".up")) for n in trainable(model))
    assert torch.allclose(model.backbone(inputs).last_hidden_state, before, atol=1e-6)  # up starts at 0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.up.normal_(std=0.05)
    adapted = model.backbone(inputs).last_hidden_state
    assert not torch.allclose(adapted, before, atol=1e-3)
    merge_lora(model)
    assert set(model.state_dict()) == plain_keys  # an ordinary model again
    assert torch.allclose(model.backbone(inputs).last_hidden_state, adapted, atol=1e-4)
