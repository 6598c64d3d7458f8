"""The change objective: simulated pairs (labels where regions were pasted, nuisance never labelled change),
one optimisation step lowers its loss on a fixed batch, and question/answer documents in `rsneo ask`'s
layout."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from rsneo.train.change import build_change_head, change_batch
from rsneo.train.config import load_config
from rsneo.train.datamodule import collate
from rsneo.train.module import RSNeoTraining


def change_module(model, tokenizer) -> RSNeoTraining:
    cfg = OmegaConf.to_container(load_config(["experiment=smoke", "stage=stage2"]), resolve=True)
    for name in cfg["objectives"]:
        cfg["objectives"][name]["weight"] = 1.0 if name == "change" else 0.0
    return RSNeoTraining(model, cfg, tokenizer, None, build_change_head(cfg, model))


def test_one_step_lowers_the_change_loss_on_a_fixed_batch(tiny_model, tokenizer, flood_samples, image_tokens):
    torch.manual_seed(0)
    module = change_module(tiny_model, tokenizer)
    batch = collate(flood_samples[10:14], image_tokens, pad_id=tokenizer.pad_token_id)
    assert batch.change is not None and len(batch.change) == 4
    optimizer = module.configure_optimizers()["optimizer"]
    before = module.losses(batch, torch.Generator().manual_seed(0))  # same seed: the same simulated pairs
    assert set(before) == {"change"}
    optimizer.zero_grad()
    before["change"].backward()
    optimizer.step()
    with torch.no_grad():
        after = module.losses(batch, torch.Generator().manual_seed(0))
    assert after["change"] < before["change"]


def test_change_sources_use_landsat_like_bands_and_never_the_held_out_pair(flood_samples):
    frame = flood_samples[0].change.frames[0]
    assert [g.band_keys for g in frame] == [("red", "green", "blue"), ("nir",), ("swir16", "swir22")]
    demo = OmegaConf.to_container(load_config(["experiment=demo"]), resolve=True)
    assert "taizhou" not in demo["data"]["sources"] and demo["data"]["split"] == "train"


def test_change_batch_packs_two_date_scene_documents(flood_samples, image_tokens):
    batch = change_batch(
        [s.change for s in flood_samples[:3]], torch.Generator().manual_seed(0), image_tokens
    )
    assert batch.labels.shape == (3, 64, 64)
    assert len(batch.inputs.images) == 3 * 2 * 3  # rows x dates x band groups


def test_chat_documents_match_the_ask_prompt_and_learn_the_answer_only(
    tokenizer, image_tokens, flood_samples
):
    from rsneo.data.documents import DocumentBuilder
    from rsneo.heads.generation import question_document
    from rsneo.model.config import RSNeoConfig
    from rsneo.train.corpus import chat_document

    frames = [flood_samples[0].chip.groups, flood_samples[1].chip.groups]
    dates = ["2019-09-18", None]
    doc = chat_document(DocumentBuilder(tokenizer, image_tokens), frames, "What changed?", "Nothing.", dates)
    config = RSNeoConfig.from_preset(
        "tiny",
        img_start_token_id=image_tokens.start,
        img_end_token_id=image_tokens.end,
        img_context_token_id=image_tokens.context,
    )
    prompt = question_document(frames, "What changed?", tokenizer, config, dates).input_ids[0].tolist()
    assert doc.ids[: len(prompt)] == prompt
    assert not any(doc.learn[: len(prompt)]) and all(doc.learn[len(prompt) :])
    assert tokenizer.decode(doc.ids[len(prompt) :]) == "Nothing.<|im_end|>"


def test_naip_sources_align_and_standardise_every_date(shared_data):
    import numpy as np

    from rsneo.train.change import naip_change_sources

    folder = shared_data / "timeseries" / "naip_m4709963"
    rgb, rgbn = naip_change_sources(folder, 128, "rgb"), naip_change_sources(folder, 128, "rgbn")
    assert len(rgb) == len(rgbn) > 10  # tiles with nodata on any date are left out
    source = rgbn[0]
    assert len(source.frames) == len(source.dates) == 10 and source.dates == sorted(source.dates)
    assert [g.band_keys for g in source.frames[0]] == [("red", "green", "blue"), ("nir",)]
    assert rgb[0].signature != rgbn[0].signature  # batched apart
    # every date on the first one's grid: a decade of change, yet neighbouring dates agree pixel by pixel far
    # better than the same date shifted by one pixel (what the raw ~1 px grid offsets would leave)
    a, b = (torch.cat([g.pixels for g in source.frames[t]]).numpy() for t in (0, 1))
    aligned = np.corrcoef(a[0].ravel(), b[0].ravel())[0, 1]
    shifted = np.corrcoef(a[0, 1:, 1:].ravel(), b[0, :-1, :-1].ravel())[0, 1]
    assert aligned > shifted + 0.05


def test_head_training_leaves_the_backbone_alone_and_the_fit_round_trips(tiny_system, shared_data, tmp_path):
    import copy

    from rsneo.heads.system import load_heads, save_heads
    from rsneo.train.change import fit_combination, naip_change_sources, train_change_head

    model, head = tiny_system.model, copy.deepcopy(tiny_system.change)
    pools = [naip_change_sources(shared_data / "timeseries" / "naip_m4709963", 64, "rgb")[:4]]
    backbone = {k: v.clone() for k, v in model.state_dict().items()}
    start = {k: v.clone() for k, v in head.state_dict().items()}
    losses = train_change_head(model, head, pools, steps=3, batch_size=2, log_every=0)
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in backbone.items())
    assert any(not torch.equal(v, head.state_dict()[k]) for k, v in start.items())
    fitted = fit_combination(model, head, pools, batches=2, batch_size=2)
    assert fitted["magnitude_weight"] == head.config.magnitude_weight != 0.0 and head.uses_magnitude
    save_heads(tmp_path, tiny_system.segmentation, head)
    _, loaded, names = load_heads(tmp_path, model.config.hidden_size)
    assert "change" in names and loaded.config == head.config


def test_the_change_domain_widens_by_the_pools_trained_here(shared_data):
    import pytest

    from rsneo.heads.domain import HeadDomain, TrainingDomain
    from rsneo.train.change import widened_domain

    base = TrainingDomain(
        {
            "segmentation": HeadDomain(("sentinel2_l1c",), (10.0, 10.0)),
            "change": HeadDomain(("sentinel2_l1c",)),
        }
    )
    widened = widened_domain(base, ["naip_rgb", "naip_rgbn", "pucallpa"], shared_data)
    assert widened.heads["segmentation"] == base.heads["segmentation"]
    assert widened.heads["change"].sensors == ("sentinel2_l1c", "naip", "landsat5_tm")
    assert widened.heads["change"].pixel_size_m == pytest.approx((5.0, 89.2), abs=0.1)
