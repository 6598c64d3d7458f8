"""Checkpoints load with weights_only=True; anything that would unpickle an object is refused with a clear
error."""

from __future__ import annotations

import collections

import pytest
import torch

from rsneo.errors import InputError
from rsneo.train.checkpoint import load_checkpoint, submodule_state


class NotAllowed:
    pass


def test_checkpoint_with_an_arbitrary_object_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "rsneo": {}, "payload": NotAllowed()}, path)
    with pytest.raises(InputError, match=r"evil.ckpt: cannot be read as a safe checkpoint"):
        load_checkpoint(path)


def test_missing_and_foreign_checkpoints_are_named(tmp_path):
    with pytest.raises(InputError, match=r"none.ckpt: expected a Lightning checkpoint file"):
        load_checkpoint(tmp_path / "none.ckpt")
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "plain.ckpt")
    with pytest.raises(InputError, match=r"expected an rsneo training checkpoint \(key 'rsneo'\)"):
        load_checkpoint(tmp_path / "plain.ckpt")


def test_submodule_state_strips_the_prefix_only_under_it():
    state = collections.OrderedDict(
        {"model.a": torch.ones(1), "model_x.b": torch.ones(1), "seg_head.c": torch.ones(1)}
    )
    assert list(submodule_state(state, "model")) == ["a"]
