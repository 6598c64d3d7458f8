"""`rsneo.io.runstate`: one writer per output folder, fingerprints that change with their input, the notice of
a discarded resume, and the clean-up of an interrupted run's hidden files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import rsneo
from rsneo.errors import InputError
from rsneo.io import runstate
from rsneo.io.runstate import (
    LOCK_NAME,
    ResumeNotice,
    fingerprint,
    folder_fingerprint,
    notice_discarded,
    output_lock,
    remove_temporaries,
    run_identity,
)

REPO = Path(__file__).resolve().parents[2]


def _holder(folder: Path) -> subprocess.Popen:
    """A fresh Python (this worktree's rsneo) that holds `folder`'s lock until it is killed."""
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from rsneo.io.runstate import output_lock
        with output_lock(Path({str(folder)!r})):
            print("locked", flush=True)
            time.sleep(600)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)


def test_second_writer_is_refused_and_a_dead_holder_is_taken_over(tmp_path):
    with output_lock(tmp_path):
        refused = pytest.raises(InputError, match=f"{tmp_path}: another rsneo run \\(pid {os.getpid()} on")
        with refused, output_lock(tmp_path):
            pass
        assert (tmp_path / LOCK_NAME).exists()
    assert not (tmp_path / LOCK_NAME).exists()  # released and removed
    holder = _holder(tmp_path)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=f"pid {holder.pid} on"), output_lock(tmp_path):
            pass
    finally:
        holder.kill()  # SIGKILL: the holder cannot remove its lock file
        holder.wait()
    assert (tmp_path / LOCK_NAME).exists()
    with output_lock(tmp_path):  # the stale lock of a dead process is taken over
        assert (tmp_path / LOCK_NAME).read_text().startswith(f"pid {os.getpid()} ")


def test_the_refusal_says_what_to_do(tmp_path):
    with output_lock(tmp_path), pytest.raises(InputError) as refused, output_lock(tmp_path):
        pass
    assert str(refused.value).endswith("wait for it to finish or choose another --out")


def test_fingerprint_is_the_resolved_path_size_modification_time_and_content(tmp_path, monkeypatch):
    path = tmp_path / "in.tif"
    path.write_bytes(b"1234")
    monkeypatch.chdir(tmp_path)
    ((name, size, mtime, digest),) = fingerprint([Path("in.tif")])  # a relative path is resolved
    assert name == str(path.resolve()) and size == 4 and mtime == path.stat().st_mtime_ns
    assert digest == hashlib.blake2b(b"1234", digest_size=16).hexdigest()
    assert fingerprint([path]) == fingerprint([Path("in.tif")])


def test_fingerprint_changes_when_the_input_is_rewritten_with_the_same_bytes(tmp_path):
    path = tmp_path / "in.tif"
    path.write_bytes(b"1234")
    before = fingerprint([path])
    os.utime(path, ns=(time.time_ns(), before[0][2] + 1_000_000))  # a copy written again a millisecond later
    assert fingerprint([path]) != before
    path.write_bytes(b"12345")
    assert fingerprint([path])[0][1] == 5


def test_fingerprint_sees_a_replacement_of_the_same_size_with_the_old_mtime(tmp_path):
    path = tmp_path / "in.tif"
    path.write_bytes(b"1234")
    before = fingerprint([path])
    path.write_bytes(b"4321")  # another file of the same size, its old mtime restored as cp -p / rsync -t do
    os.utime(path, ns=(before[0][2], before[0][2]))
    after = fingerprint([path])
    assert after[0][:3] == before[0][:3] and after != before


def test_a_large_file_is_sampled_and_still_sees_a_replaced_header(tmp_path, monkeypatch):
    monkeypatch.setattr(runstate, "FULL_HASH_BYTES", 1 << 20)
    path = tmp_path / "big.tif"
    data = bytearray(np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes())
    path.write_bytes(bytes(data))
    before = runstate.content_digest(path)
    data[100] ^= 1  # a header byte
    path.write_bytes(bytes(data))
    assert runstate.content_digest(path) != before


def test_a_band_folder_is_digested_file_by_file(tmp_path):
    (tmp_path / "B02.tif").write_bytes(b"aa")
    (tmp_path / "B03.tif").write_bytes(b"bb")
    before = fingerprint([tmp_path])
    (tmp_path / "B03.tif").write_bytes(b"cc")
    assert fingerprint([tmp_path])[0][3] != before[0][3]


def test_folder_fingerprint_follows_the_files_of_a_model_folder_only(tmp_path):
    assert folder_fingerprint(None) is None  # the bundled model: no folder to sign
    (tmp_path / "b.safetensors").write_bytes(b"b")
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ignored.bin").write_bytes(b"x")
    before = folder_fingerprint(tmp_path)
    assert [Path(p).name for p, *_ in before] == ["a.json", "b.safetensors"]  # sorted; folders left out
    (tmp_path / "sub" / "ignored.bin").write_bytes(b"xy")
    assert folder_fingerprint(tmp_path) == before
    (tmp_path / "b.safetensors").write_bytes(b"retrained")
    assert folder_fingerprint(tmp_path) != before


def test_run_identity_is_the_rsneo_version():
    assert run_identity() == {"rsneo": rsneo.__version__}


def test_notice_names_the_state_and_why_it_was_dropped(tmp_path):
    with pytest.warns(ResumeNotice) as caught:
        notice_discarded(tmp_path / "a.tif", "saved state is damaged")
    assert [str(w.message) for w in caught] == [
        f"{tmp_path / 'a.tif'}: saved state is damaged; discarded it and starting again"
    ]


def test_remove_temporaries_removes_hidden_siblings_of_the_outputs_only(tmp_path):
    out = tmp_path / "map[1].tif"  # glob characters in a name must not widen what is removed
    hidden = [tmp_path / ".map[1].tif.partial.tif", tmp_path / ".map[1].tif.progress.json"]
    kept = [
        out,
        tmp_path / ".map1.tif.partial.tif",
        tmp_path / ".other.tif.partial.tif",
        tmp_path / "mine.txt",
    ]
    for path in hidden + kept:
        path.write_bytes(b"x")
    remove_temporaries([out, tmp_path / "never_written.tif"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)


def test_a_prompt_cache_written_beside_the_weights_keeps_the_folders_fingerprint(tmp_path):
    """The first run on a model folder writes its prompt cache there; a resume must still match that run."""
    from rsneo.io.runstate import PROMPT_CACHE, folder_fingerprint

    (tmp_path / "model.safetensors").write_bytes(b"weights")
    before = folder_fingerprint(tmp_path)
    (tmp_path / PROMPT_CACHE).write_bytes(b"vectors")
    assert folder_fingerprint(tmp_path) == before
    (tmp_path / "model.safetensors").write_bytes(b"retrained")
    assert folder_fingerprint(tmp_path) != before


def test_a_remembered_digest_still_sees_a_same_size_rewrite_with_its_mtime_restored(tmp_path, monkeypatch):
    monkeypatch.setattr(runstate, "_DIGESTS", {})
    monkeypatch.setattr(runstate, "RACY_NS", 50_000_000)  # 50 ms: the file below is old enough to remember
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"1234")
    time.sleep(0.2)
    first = runstate.content_digest(path)
    assert list(runstate._DIGESTS.values()) == [first]  # remembered: the next run of a batch reads nothing
    assert runstate.content_digest(path) == first
    mtime = path.stat().st_mtime_ns
    path.write_bytes(b"4321")
    os.utime(path, ns=(mtime, mtime))  # cp -p / rsync -t: same size, same mtime, new ctime
    assert runstate.content_digest(path) != first


def test_a_file_changed_just_now_is_not_remembered(tmp_path, monkeypatch):
    monkeypatch.setattr(runstate, "_DIGESTS", {})
    path = tmp_path / "in.tif"
    path.write_bytes(b"1234")
    runstate.content_digest(path)
    assert runstate._DIGESTS == {}  # its ctime may tick again within RACY_NS: hashed every time
