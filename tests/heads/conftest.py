"""A tiny random rsneo system saved as a model folder (no weights can be downloaded in tests)."""

from __future__ import annotations

import pytest

from rsneo.heads.system import load_system, random_system

TOKENIZER_TEXTS = [
    "a satellite image of water, land, open water, dry land, forest, vegetation, built-up areas, bare soil.",
    "What changed between these images? Describe the changes. How much water is there?",
] * 4


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_model")
    random_system(folder, texts=TOKENIZER_TEXTS)
    return folder


@pytest.fixture(scope="session")
def tiny_system(tiny_model_dir):
    return load_system(tiny_model_dir)
