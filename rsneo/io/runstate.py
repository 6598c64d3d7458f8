"""Who may write an output folder, and whether the state an interrupted run left there may be trusted.

- `output_lock(folder)`: one writer per output folder. The lock is an advisory `flock` on `.rsneo.lock`, which
  the kernel drops when its process dies however it dies (kill -9 included), so a lock left by a killed run
  is simply taken over; a second live writer is refused with an `InputError` (exit 2) before it touches
  anything.
- `fingerprint(paths)`: what an input is (resolved path, size, modification time) for resume signatures,
  together with the rsneo version (`run_identity`), so state from another input, option or release never
  matches.
- `ResumeNotice`: the one-line warning shown when saved state is discarded and the work starts again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path

from rsneo.errors import InputError

LOCK_NAME = ".rsneo.lock"


class ResumeNotice(UserWarning):
    """Saved state of an interrupted run could not be used; the run starts again from the beginning."""


def notice_discarded(what: Path, why: str) -> None:
    """One line for the user: which saved state was dropped and why."""
    warnings.warn(f"{what}: {why}; discarded it and starting again", ResumeNotice, stacklevel=3)


def fingerprint(paths: list[Path]) -> list[tuple[str, int, int]]:
    """(resolved path, size in bytes, mtime in ns) of each input: any rewrite of an input changes it."""
    out = []
    for path in map(Path, paths):
        stat = path.stat()
        out.append((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    return out


def folder_fingerprint(folder: Path | None) -> list[tuple[str, int, int]] | None:
    """`fingerprint` of the files directly in `folder` (a model folder: retrained weights change it)."""
    if folder is None:
        return None
    return fingerprint(sorted(p for p in Path(folder).iterdir() if p.is_file()))


def run_identity() -> dict[str, str]:
    """The parts of a resume signature that are not the command's own options."""
    from rsneo import __version__

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
