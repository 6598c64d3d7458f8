"""`rsneo.heads.fewshot`: learnt classes saved in a model folder, found again by name, and the class vectors
`segment` uses: learnt vectors for learnt names, prompt encodings for every other name, in the order asked."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import save_file

from rsneo.errors import InputError
from rsneo.heads.features import encode_class_prompts
from rsneo.heads.fewshot import LEARNT_WEIGHTS, LearntClasses, class_vectors, load_learnt, save_learnt


def test_learnt_classes_round_trip_through_a_model_folder(tmp_path):
    vectors = torch.randn(2, 64, dtype=torch.float64)
    save_learnt(tmp_path, LearntClasses(["Flood water", "dry ground"], vectors))
    loaded = load_learnt(tmp_path)
    assert loaded.names == ["Flood water", "dry ground"]
    assert loaded.vectors.dtype == torch.float32  # stored as float32 whatever they trained in
    torch.testing.assert_close(loaded.vectors, vectors.float(), rtol=0, atol=0)


def test_lookup_ignores_case_and_extra_spaces():
    learnt = LearntClasses(["Flood water", "dry ground"], torch.eye(2))
    assert torch.equal(learnt.lookup("  flood   WATER "), torch.tensor([1.0, 0.0]))
    assert torch.equal(learnt.lookup("Dry Ground"), torch.tensor([0.0, 1.0]))
    assert learnt.lookup("flood") is None and learnt.lookup("floodwater") is None


def test_a_folder_without_learnt_classes_has_none(tmp_path):
    assert load_learnt(tmp_path) is None and load_learnt(None) is None


def test_damaged_learnt_classes_are_refused_naming_the_file(tmp_path):
    path = tmp_path / LEARNT_WEIGHTS
    path.write_bytes(b"not safetensors")
    with pytest.raises(InputError, match=f"{LEARNT_WEIGHTS}: cannot read the learnt classes"):
        load_learnt(tmp_path)
    save_file({"vectors": torch.zeros(3, 8)}, str(path), metadata={"names": '["a", "b"]'})
    with pytest.raises(InputError, match=r"expected one vector per name, got \(3, 8\) for \['a', 'b'\]"):
        load_learnt(tmp_path)
    save_file({"vectors": torch.zeros(2, 8)}, str(path))  # no names in the metadata
    with pytest.raises(InputError, match="cannot read the learnt classes"):
        load_learnt(tmp_path)


def test_class_vectors_mix_learnt_vectors_and_prompt_encodings_in_the_order_asked(tiny_system, tmp_path):
    hidden = tiny_system.config.hidden_size
    learnt = torch.randn(1, hidden)
    save_learnt(tmp_path, LearntClasses(["Flood water"], learnt))
    system = dataclasses.replace(tiny_system, folder=tmp_path)
    with torch.no_grad():
        got = class_vectors(system, ["forest", "flood water", "built-up"])
        prompts = encode_class_prompts(
            system.model, system.tokenizer, ["forest", "built-up"], system.segmentation.config
        )
    assert got.shape == (3, hidden)
    torch.testing.assert_close(got[1], learnt[0], rtol=0, atol=0)  # the learnt vector itself
    torch.testing.assert_close(got[[0, 2]], prompts, rtol=0, atol=1e-6)  # the same prompts, one batch or two
    without = dataclasses.replace(tiny_system, folder=None)  # the bundled model: prompts only
    with torch.no_grad():
        plain = class_vectors(without, ["flood water"])
        expected = encode_class_prompts(
            system.model, system.tokenizer, ["flood water"], system.segmentation.config
        )
    torch.testing.assert_close(plain, expected, rtol=0, atol=1e-6)
