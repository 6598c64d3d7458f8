"""The offline tokenizer: round trips, and NEO's image tokens as single special ids."""

from __future__ import annotations

import json

import pytest

from rsneo.errors import InputError
from rsneo.model.tokenizer import (
    IMAGE_SPECIALS,
    TEXT_SPECIALS,
    add_image_tokens,
    load_tokenizer,
    train_tokenizer,
)


@pytest.fixture(scope="module")
def captions(shared_data) -> list[str]:
    manifest = json.loads((shared_data / "text/rsicd_mini/manifest.json").read_text())
    return [c for item in manifest for c in item["captions"]]


@pytest.fixture(scope="module")
def tokenizer(captions):
    return train_tokenizer(captions, vocab_size=400)


def test_saved_and_loaded_tokenizer_round_trips_text(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    text = "Two planes near a lake; NDVI=0.73 — Zürich 🌍 <img> tail"
    ids = tokenizer.encode(text)
    assert loaded.encode(text) == ids
    assert loaded.decode(ids) == text
    assert len(loaded) == len(tokenizer)


def test_image_tokens_are_single_special_ids(tokenizer):
    ids = add_image_tokens(tokenizer)
    assert len({ids.start, ids.end, ids.context}) == 3
    for token, expected in zip(IMAGE_SPECIALS, (ids.start, ids.end, ids.context), strict=True):
        assert tokenizer.encode(token) == [expected]
        assert token in tokenizer.all_special_tokens
    encoded = tokenizer.encode("a<img><IMG_CONTEXT><IMG_CONTEXT></img>b")
    assert encoded[1:5] == [ids.start, ids.context, ids.context, ids.end]
    for token in TEXT_SPECIALS:
        assert len(tokenizer.encode(token)) == 1


def test_add_image_tokens_is_idempotent(tokenizer):
    before = len(tokenizer)
    first = add_image_tokens(tokenizer)
    assert add_image_tokens(tokenizer) == first
    assert len(tokenizer) == before


def test_vocab_size_is_respected_and_learns_merges(captions):
    tok = train_tokenizer(captions, vocab_size=300)
    assert len(tok) <= 300
    assert len(tok.encode("the airport")) < len(b"the airport")


def test_load_tokenizer_from_folder_without_tokenizer_names_it(tmp_path):
    with pytest.raises(InputError, match="expected a tokenizer folder with tokenizer.json"):
        load_tokenizer(tmp_path)
