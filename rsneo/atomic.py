"""Atomic writes, the one implementation every output of rsneo goes through.

A file or folder is written under a hidden temporary name in the same folder as its final name, flushed to
disk (fsync) and only then renamed into place, so a reader, a resumed run or a crash sees either the old
complete output or the new complete one, never half a file. The same folder matters: a rename is atomic
only within one file system. Stdlib only, so every layer (io, model, heads, train, predict) may use it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def hidden_path(path: Path, suffix: str) -> Path:
    """A temporary name next to `path` (`.name.suffix`), in the same folder so the final rename is atomic."""
    path = Path(path)
    return path.with_name(f".{path.name}.{suffix}")


def fsync_path(path: Path) -> None:
    """Flush a written file (or a folder's entries) to disk; a no-op where the OS cannot sync folders."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if Path(path).is_dir() and hasattr(os, "O_DIRECTORY") else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # e.g. folders on Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def replace(tmp: Path, path: Path) -> None:
    """Sync `tmp`, rename it onto `path` (replacing a file there) and sync the folder that holds the name."""
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(Path(path).parent)


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = "partial") -> Iterator[Path]:
    """Yield a temporary path next to `path` to write to (by any writer: numpy, GDAL, SQLite); when the block
    ends without an error it replaces `path` atomically, else it is removed and `path` is left as it was."""
    path = Path(path)
    tmp = hidden_path(path, suffix)
    tmp.unlink(missing_ok=True)  # a leftover of a crashed run
    try:
        yield tmp
        replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """Yield an empty temporary folder next to `path`; when the block ends without an error its files are
    synced and it is renamed to `path` (an existing `path` is replaced), else it is removed.

    Replacing an existing folder takes two renames (the old one aside, then the new one in): a failed second
    rename puts the old folder back, and a crash between them leaves `path` absent but never half written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        yield tmp
        for item in tmp.rglob("*"):
            if item.is_file():
                fsync_path(item)
        fsync_path(tmp)
        aside = None
        if path.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, aside / path.name)
        try:
            os.replace(tmp, path)
        except BaseException:
            if aside is not None:
                os.replace(aside / path.name, path)
            raise
        finally:
            if aside is not None:
                shutil.rmtree(aside, ignore_errors=True)
        fsync_path(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
