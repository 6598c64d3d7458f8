"""`rsneo.heads.prompt_cache`: class-name prompt vectors stored once per model folder (safetensors), read
back equal, invalidated by new weights, a damaged file ignored with a warning, the package's model cached
in the user's cache folder."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from rsneo.heads import prompt_cache
from rsneo.heads.features import encode_class_prompts
from rsneo.heads.fewshot import class_vectors
from rsneo.heads.prompt_cache import CACHE_FILE, PromptCacheWarning, cache_path, prompt_vectors
from rsneo.heads.system import BUNDLED_MODEL, load_system
from rsneo.heads.vocabulary import TrainedClass, Vocabulary, match_classes, save_vocabulary

NAMES = ["water", "open water", "forest", "built-up"]
# fp32 on CPU: the same prompts in another batch (other padding width) differ in the last bits only
TOL = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture
def folder(tiny_model_dir, tmp_path):
    """A copy of the tiny model folder with a vocabulary of two classes (one with other names)."""
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy, ignore=shutil.ignore_patterns(CACHE_FILE))
    save_vocabulary(copy, Vocabulary((
        TrainedClass("water", ("a satellite image of water",), synonyms=("lake", "river")),
        TrainedClass("land", ("a satellite image of land",)),
    )))  # fmt: skip
    return copy


@pytest.fixture
def counted(monkeypatch):
    """The names the backbone is asked to encode, call by call."""
    calls: list[list[str]] = []

    def encode(model, tokenizer, names, config):
        calls.append(list(names))
        return encode_class_prompts(model, tokenizer, names, config)

    monkeypatch.setattr(prompt_cache, "encode_class_prompts", encode)
    return calls


def reference(system, names):
    return encode_class_prompts(system.model, system.tokenizer, names, system.segmentation.config)


def test_a_second_run_reads_every_vector_from_the_cache_and_they_equal_the_encoding(folder, counted):
    system = load_system(folder)
    first = class_vectors(system, NAMES)
    assert counted == [NAMES] and (folder / CACHE_FILE).is_file()
    again = load_system(folder)  # a new run: nothing in memory
    second = class_vectors(again, NAMES)
    assert counted == [NAMES]  # nothing encoded the second time
    assert "tokenizer" not in again.__dict__  # nor was the tokenizer (transformers) loaded for it
    torch.testing.assert_close(second, first, rtol=0, atol=0)  # stored as computed (float32)
    torch.testing.assert_close(second, reference(system, NAMES), **TOL)


def test_a_run_encodes_only_the_names_the_cache_lacks(folder, counted):
    system = load_system(folder)
    matches = match_classes(system, ["lake", "banana"])
    assert counted == [["water", "lake", "river", "land", "banana"]]  # the vocabulary, then the typed names
    counted.clear()
    again = load_system(folder)
    cached = match_classes(again, ["lake", "banana", "meadow"])
    assert counted == [["meadow"]]
    for before, after in zip(matches, cached[:2], strict=True):
        assert (after.name, after.nearest, after.trained) == (before.name, before.nearest, before.trained)
        assert after.similarity == pytest.approx(before.similarity, abs=1e-5)


def test_new_weights_invalidate_the_cache(folder, counted):
    class_vectors(load_system(folder), NAMES)
    weights = folder / "model.safetensors"
    state = load_file(weights)
    name = next(k for k in state if "embed_tokens" in k)
    state[name] = state[name] * 1.5  # new weights, as a retraining writes them
    save_file(state, weights, metadata={"format": "pt"})
    counted.clear()
    system = load_system(folder)
    vectors = class_vectors(system, NAMES)
    assert counted == [NAMES]  # all encoded again with the new weights
    torch.testing.assert_close(vectors, reference(system, NAMES), **TOL)
    assert list(load_file(folder / CACHE_FILE)) == ["vectors"]


@pytest.mark.parametrize("damage", [b"", b"not a safetensors file", b"\x08" + b"\x00" * 7 + b"{}"])
def test_a_damaged_cache_is_ignored_with_a_warning_and_written_again(folder, counted, damage):
    (folder / CACHE_FILE).write_bytes(damage)
    system = load_system(folder)
    with pytest.warns(PromptCacheWarning, match=rf"{CACHE_FILE}: prompt cache unreadable"):
        vectors = class_vectors(system, NAMES)
    torch.testing.assert_close(vectors, reference(system, NAMES), **TOL)
    counted.clear()
    class_vectors(load_system(folder), NAMES)  # the rewritten cache reads without a warning
    assert counted == []


def test_a_cache_of_the_wrong_shape_is_ignored_with_a_warning(folder):
    class_vectors(load_system(folder), NAMES)
    stored = load_file(folder / CACHE_FILE)
    from safetensors import safe_open

    with safe_open(str(folder / CACHE_FILE), framework="pt") as f:
        meta = f.metadata()
    save_file({"vectors": stored["vectors"][:2]}, folder / CACHE_FILE, metadata=meta)
    with pytest.warns(PromptCacheWarning, match=r"4 names"):
        class_vectors(load_system(folder), NAMES)


def test_bf16_vectors_are_cached_apart_from_fp32_ones(folder, counted):
    system = load_system(folder)
    fp32 = class_vectors(system, NAMES)
    system.model.to(torch.bfloat16)
    bf16 = class_vectors(system, NAMES)
    assert bf16.dtype == torch.bfloat16 and counted == [NAMES, NAMES]  # another key: encoded in bf16
    torch.testing.assert_close(bf16, reference(system, NAMES), rtol=0, atol=0)  # stored bf16 -> fp32 exactly
    torch.testing.assert_close(bf16.float(), fp32, rtol=0.05, atol=0.05)  # bf16 keeps 8 bits of mantissa


def test_the_packaged_model_and_read_only_folders_cache_in_the_user_cache_folder(
    folder, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    bundled = cache_path(BUNDLED_MODEL)
    assert bundled.parent == tmp_path / "xdg" / "rsneo" and bundled.suffix == ".safetensors"
    assert cache_path(folder) == folder.resolve() / CACHE_FILE
    monkeypatch.setattr(prompt_cache, "writable", lambda path: False)  # as for a user who may not write it
    system = load_system(folder)
    vectors = prompt_vectors(system, NAMES, system.segmentation.config)
    assert not (folder / CACHE_FILE).exists() and cache_path(folder).is_file()
    assert cache_path(folder).parent == bundled.parent and cache_path(folder) != bundled  # one per folder
    torch.testing.assert_close(vectors, reference(system, NAMES), **TOL)
