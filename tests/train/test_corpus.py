"""Training documents from the sample archives and from prepared shards."""

from __future__ import annotations

import warnings

import pytest

from rsneo.data.documents import DocumentBuilder
from rsneo.errors import InputError
from rsneo.train.corpus import bigearthnet, shards, taizhou, timeseries
from rsneo.train.datamodule import build_samples


@pytest.fixture
def builder(tokenizer, image_tokens):
    return lambda: DocumentBuilder(tokenizer, image_tokens)


def test_time_series_documents_hold_one_frame_per_date_in_order(shared_data, builder, tokenizer):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = timeseries(shared_data, builder, 64)
    assert len(samples) == (377 // 64) * (697 // 64)
    doc = samples[0].document
    times = [g.time for g in doc.groups]
    assert len(doc.groups) == 8 * 3 and times == sorted(times)  # SWIR, NIR, red+green groups per date
    assert tokenizer.decode(doc.ids).startswith("1985:<img>")
    assert not any(doc.learn[:-1])  # nothing to say about a time series but its end


def test_bigearthnet_scenes_pair_sentinel2_with_sentinel1_and_say_their_labels(
    shared_data, builder, tokenizer
):
    samples = bigearthnet(shared_data, builder, 64)
    assert len(samples) == 6
    keys = [g.band_keys for g in samples[0].document.groups]
    assert ("vv", "vh") in keys and ("red", "green", "blue") in keys
    text = tokenizer.decode(
        [i for i, learn in zip(samples[0].document.ids, samples[0].document.learn, strict=True) if learn]
    )
    assert text.startswith("Land cover: non-irrigated arable land")


def test_change_documents_state_the_changed_share_of_each_tile(shared_data, builder, tokenizer):
    samples = taizhou(shared_data, builder, 64)
    text = tokenizer.decode(samples[0].document.ids)
    assert (
        text.startswith("2000:<img>")
        and "Between 2000 and 2003," in text
        and "checked pixels changed." in text
    )


def test_prepared_shards_become_documents_and_labelled_chips(shared_data, builder, tmp_path, tokenizer):
    from rsneo.data.recipes import RECIPES, tile_loader
    from rsneo.data.shards import prepare_shards

    items = RECIPES["sen1floods11"].items(shared_data / "sen1floods11")
    prepare_shards(items, tile_loader("sen1floods11", 64), tmp_path, 1, progress=False)
    samples = shards(shared_data, builder, 64, str(tmp_path))
    assert len(samples) == 64 and all(s.chip is not None for s in samples)
    assert samples[0].chip.class_names == ("land", "water")  # the archive's one table, as in memory
    assert len(samples[0].document.groups) == 6  # 5 Sentinel-2 groups + VV/VH in one frame
    assert "water covers" in tokenizer.decode(samples[0].document.ids)


def test_unknown_source_and_bad_tile_are_input_errors(shared_data, tokenizer, image_tokens):
    with pytest.raises(InputError, match=r"data.sources: expected names from .* got \['modis'\]"):
        build_samples(["modis"], shared_data, tokenizer, image_tokens, 64, token_size=32)
    with pytest.raises(InputError, match="data.tile: expected a multiple of 32 pixels .* got 50"):
        build_samples(["sen1floods11"], shared_data, tokenizer, image_tokens, 50, token_size=32)
    with pytest.raises(InputError, match="data.tile: expected a multiple of 48 pixels .* got 64"):
        build_samples(["sen1floods11"], shared_data, tokenizer, image_tokens, 64, token_size=48)


def test_qa_adds_chat_documents_with_answers_only_learned_and_taizhou_gives_no_change_source(
    shared_data, builder, tokenizer
):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = bigearthnet(shared_data, builder, 64)
        asked = bigearthnet(shared_data, builder, 64, qa=True)
        held_out = taizhou(shared_data, builder, 64)
    assert len(asked) == len(plain) * 5  # label sentence, 3 land-cover questions, 1 change question each
    chats = [s.document for s in asked if tokenizer.decode(s.document.ids[:1]) == "<|im_start|>"]
    assert len(chats) == 4 * len(plain)
    for doc in chats:
        answer = tokenizer.decode([i for i, learn in zip(doc.ids, doc.learn, strict=True) if learn])
        assert answer.startswith(("The scene shows", "About", "No change", "Less than")), answer
        assert answer.endswith("<|im_end|>")
    assert all(s.change is not None for s in plain) and all(s.change is None for s in held_out)


def test_training_frames_follow_the_models_token_size(shared_data, tokenizer, image_tokens):
    """A model with 16-pixel tokens gets 16-pixel token grids: a 48-pixel tile is 3 x 3 tokens, not 64 px."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = build_samples(["timeseries"], shared_data, tokenizer, image_tokens, 48, token_size=16)
    groups = samples[0].document.groups
    assert {g.token_size for g in groups} == {16}
    assert {tuple(g.pixels.shape[-2:]) for g in groups} == {(48, 48)} and groups[0].grid == (3, 3)
    assert {g.token_size for g in samples[0].change.frames[0]} == {16}


def test_head_imagery_names_the_rasters_each_head_trains_on(shared_data):
    from rsneo.train.corpus import head_imagery

    floods = head_imagery("sen1floods11", shared_data)
    assert {(head, sensor) for head, _, sensor in floods} == {
        ("segmentation", "sentinel2_l1c"),
        ("change", "sentinel2_l1c"),
    }
    assert {sensor for _, _, sensor in head_imagery("bigearthnet", shared_data)} == {"sentinel2_l2a"}
    series = head_imagery("timeseries", shared_data)
    assert len(series) == 8 and {(h, s) for h, _, s in series} == {("change", "landsat5_tm")}
    assert head_imagery("taizhou", shared_data) == []  # language only: held out from the change head
    assert head_imagery("shards", shared_data) is None  # the user's: not known from the config
