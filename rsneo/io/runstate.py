"""Who may write an output folder, and whether the state an interrupted run left there may be trusted.

- `output_lock(folder)`: one writer per output folder. The lock is an advisory `flock` on `.rsneo.lock`, which
  the kernel drops when its process dies however it dies (kill -9 included), so a lock left by a killed run
  is simply taken over; a second live writer is refused with an `InputError` (exit 2) before it touches
  anything.
- `fingerprint(paths)`: what an input is (resolved path, size, modification time, content digest) for resume
  signatures,
  together with the rsneo version (`run_identity`), so state from another input, option or release never
  matches.
- `ResumeNotice`: the one-line warning shown when saved state is discarded and the work starts again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import os
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from rsneo.errors import InputError
from rsneo.version import __version__

LOCK_NAME = ".rsneo.lock"


class ResumeNotice(UserWarning):
    """Saved state of an interrupted run could not be used; the run starts again from the beginning."""


def notice_discarded(what: Path, why: str) -> None:
    """One line for the user: which saved state was dropped and why."""
    warnings.warn(f"{what}: {why}; discarded it and starting again", ResumeNotice, stacklevel=3)


FULL_HASH_BYTES = 1 << 30  # files up to 1 GiB are hashed whole (about a second); larger ones are sampled
SAMPLE_BLOCK = 1 << 16
SAMPLE_BLOCKS = 256
RACY_NS = 2_000_000_000  # files changed this recently are not remembered
MAX_REMEMBERED = 4096
_DIGESTS: dict[tuple[int, int, int, int, int], str] = {}  # (dev, inode, size, mtime, ctime) -> digest


def fingerprint(paths: list[Path]) -> list[tuple[str, int, int, str]]:
    """(resolved path, size in bytes, mtime in ns, content digest) of each input.

    Any rewrite changes it, and so does a replacement that keeps the size and restores the old mtime (`cp -p`,
    `rsync -t`, `tar`): the digest reads the content. A band folder is digested file by file.
    """
    out = []
    for path in map(Path, paths):
        stat = path.stat()
        out.append((str(path.resolve()), stat.st_size, stat.st_mtime_ns, content_digest(path)))
    return out


def content_digest(path: Path) -> str:
    """BLAKE2b of a file's bytes, or of a folder's files' names and digests.

    Files up to `FULL_HASH_BYTES` are hashed whole. Beyond that the first and last MiB and `SAMPLE_BLOCKS`
    evenly spaced 64 KiB blocks are: a change confined to unsampled bytes of such a file is the one
    replacement it misses. A file's digest is remembered for the process (a batch signs the same model
    folder for every input) under its inode, size, mtime and ctime: nothing replaces or rewrites a file
    without moving its ctime, which no user tool can set back. Files changed in the last `RACY_NS` are
    hashed every time, as ctime ticks coarsely (the "racy" entries of git's index).
    """
    path = Path(path)
    if path.is_dir():
        digest = hashlib.blake2b(digest_size=16)
        for child in sorted(p for p in path.iterdir() if p.is_file()):
            digest.update(f"{child.name}\0{content_digest(child)}\0".encode())
        return digest.hexdigest()
    stat = path.stat()
    key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key in _DIGESTS:
        return _DIGESTS[key]
    started = time.time_ns()
    value = _file_digest(path, stat.st_size)
    if started - stat.st_ctime_ns > RACY_NS:
        if len(_DIGESTS) >= MAX_REMEMBERED:
            _DIGESTS.clear()
        _DIGESTS[key] = value
    return value


def _file_digest(path: Path, size: int) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        if size <= FULL_HASH_BYTES:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        else:
            step = (size - SAMPLE_BLOCK) // (SAMPLE_BLOCKS - 1)
            offsets = [0, size - (1 << 20)] + [i * step for i in range(SAMPLE_BLOCKS)]
            for offset in offsets:
                f.seek(offset)
                digest.update(f.read(1 << 20 if offset in offsets[:2] else SAMPLE_BLOCK))
    return digest.hexdigest()


# A file a run derives from a model folder's own files and keeps beside them (rsneo.heads.prompt_cache):
# written by the first run on a folder, so not part of the folder's identity (a resume would restart).
PROMPT_CACHE = "prompt_cache.safetensors"


def folder_fingerprint(folder: Path | None) -> list[tuple[str, int, int, str]] | None:
    """`fingerprint` of the files directly in `folder` (a model folder: retrained weights change it), caches
    derived from them left out."""
    if folder is None:
        return None
    return fingerprint(sorted(p for p in Path(folder).iterdir() if p.is_file() and p.name != PROMPT_CACHE))


def run_identity() -> dict[str, str]:
    """The parts of a resume signature that are not the command's own options."""
    return {"rsneo": __version__}


@contextlib.contextmanager
def output_lock(folder: Path) -> Iterator[Path]:
    """Hold `folder` for this process: a second writer gets an InputError naming the holder."""
    folder = Path(folder)
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):  # a filesystem without locks: go unguarded
                break
            holder = _read_holder(fd)
            os.close(fd)
            raise InputError(
                f"{folder}: another rsneo run ({holder}) is writing to this output folder; wait for it to "
                "finish or choose another --out"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a lock file its previous holder removed while we waited for it
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        yield folder
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def remove_temporaries(paths: list[Path]) -> None:
    """Remove the hidden files (`.<name>.*`: partial files, progress, carries) kept beside each output."""
    for path in map(Path, paths):
        for hidden in path.parent.glob(f".{glob.escape(path.name)}.*"):
            hidden.unlink(missing_ok=True)


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "pid unknown"
