"""A small tokenizer trained on real captions, shared by the data tests."""

from __future__ import annotations

import json

import pytest

from rsneo.model.tokenizer import train_tokenizer


@pytest.fixture(scope="session")
def caption_tokenizer(shared_data):
    manifest = json.loads((shared_data / "text/rsicd_mini/manifest.json").read_text())
    return train_tokenizer([c for item in manifest for c in item["captions"]], vocab_size=400)
