"""Teaching other class names moves only the embedding rows of word pieces no training document contains."""

from __future__ import annotations

import copy
from dataclasses import replace

import torch

from rsneo.heads.features import encode_class_prompts
from rsneo.heads.vocabulary import Vocabulary, vocabulary_for_classes
from rsneo.train.teach_words import taught_vocabulary, teach


def test_teach_moves_only_untrained_word_pieces_and_keeps_the_class_vectors(tiny_system, shared_data):
    system = copy.deepcopy(tiny_system)
    system.vocabulary = vocabulary_for_classes(["water", "land"], system.segmentation.config.prompt_template)
    config = system.segmentation.config
    before_weight = system.model.backbone.embed_tokens.weight.detach().clone()
    before_heads = {k: v.clone() for k, v in system.segmentation.state_dict().items()}
    before_lm = system.model.lm_head.weight.detach().clone()
    with torch.no_grad():
        classes_before = encode_class_prompts(system.model, system.tokenizer, ["water", "land"], config)
        lake_before = encode_class_prompts(system.model, system.tokenizer, ["water", "lake"], config)
    result = teach(system, shared_data, steps=3, log_every=100)
    weight = system.model.backbone.embed_tokens.weight.detach()
    moved = (weight != before_weight).any(dim=1)
    assert 0 < int(moved.sum()) <= result["free_tokens"]
    for name, tensor in system.segmentation.state_dict().items():
        assert torch.equal(tensor, before_heads[name]), name
    with torch.no_grad():
        classes_after = encode_class_prompts(system.model, system.tokenizer, ["water", "land"], config)
        lake_after = encode_class_prompts(system.model, system.tokenizer, ["water", "lake"], config)
    assert torch.equal(classes_after, classes_before)  # "water" and "land" read exactly as before
    cosine = torch.nn.functional.cosine_similarity
    assert cosine(lake_after[1], lake_after[0], dim=0) > cosine(lake_before[1], lake_before[0], dim=0)
    if system.model.config.tie_word_embeddings:  # the bundled model: still tied
        assert system.model.lm_head.weight is system.model.backbone.embed_tokens.weight
    else:
        assert torch.equal(system.model.lm_head.weight, before_lm)


def test_the_taught_vocabulary_keeps_held_out_scores_and_narrower_names():
    template = "a satellite image of {}"
    old = vocabulary_for_classes(["water", "land"], template)
    old = Vocabulary(
        tuple(replace(c, held_out={"iou": 0.8}) if c.name == "water" else c for c in old.classes),
        old.match_threshold,
        old.note,
    )
    new = taught_vocabulary(old, ["water", "land"], template, steps=300)
    water = next(c for c in new.classes if c.name == "water")
    land = next(c for c in new.classes if c.name == "land")
    assert water.held_out == {"iou": 0.8} and land.held_out == {}
    assert "lake" in water.narrower and "lake" in water.synonyms  # typed "lake" reads as all of water
    assert "300 steps" in new.note and "rivers and lakes" in new.note
