"""Atomic writes: the final name holds the old or the new complete content, and no temporary is left over."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rsneo import atomic


def test_write_text_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "answer.txt"
    path.write_text("old")
    atomic.write_text(path, "new ü")
    assert path.read_text(encoding="utf-8") == "new ü"
    assert [p.name for p in tmp_path.iterdir()] == ["answer.txt"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "map.tif"
    path.write_bytes(b"complete")
    with pytest.raises(RuntimeError), atomic.atomic_path(path) as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(".")  # same folder: the rename is atomic
        tmp.write_bytes(b"half")
        raise RuntimeError("writer crashed")
    assert path.read_bytes() == b"complete"
    assert [p.name for p in tmp_path.iterdir()] == ["map.tif"]


def test_atomic_path_removes_a_stale_temporary_first(tmp_path):
    path = tmp_path / "carry.npz"
    stale = atomic.hidden_path(path, "tmp.npz")
    stale.write_bytes(b"left by a crashed run")
    with atomic.atomic_path(path, "tmp.npz") as tmp:
        assert tmp == stale and not tmp.exists()
        tmp.write_bytes(b"fresh")
    assert path.read_bytes() == b"fresh" and not stale.exists()


def test_atomic_folder_replaces_a_folder_whole(tmp_path):
    dst = tmp_path / "model"
    dst.mkdir()
    (dst / "old.json").write_text("{}")
    with atomic.atomic_folder(dst) as tmp:
        (tmp / "config.json").write_text("{}")
        assert not (dst / "config.json").exists()  # nothing visible before the block ends
    assert sorted(p.name for p in dst.iterdir()) == ["config.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_failed_folder_write_leaves_the_old_folder(tmp_path):
    dst = tmp_path / "model"
    dst.mkdir()
    (dst / "weights").write_text("complete")
    with pytest.raises(ValueError), atomic.atomic_folder(dst) as tmp:
        (tmp / "weights").write_text("half")
        raise ValueError("conversion failed")
    assert (dst / "weights").read_text() == "complete"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_failed_final_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    dst = tmp_path / "model"
    dst.mkdir()
    (dst / "weights").write_text("complete")
    rename = os.replace

    def refuse_the_new_folder(src, target):
        if Path(src).name.startswith(".model.partial-"):
            raise OSError("disk gone")
        rename(src, target)

    monkeypatch.setattr(atomic.os, "replace", refuse_the_new_folder)
    with pytest.raises(OSError, match="disk gone"), atomic.atomic_folder(dst) as tmp:
        (tmp / "weights").write_text("new")
    assert (dst / "weights").read_text() == "complete"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
