"""The sliding-window engine's saved state: what lets an interrupted run continue, and what proves it may.

After every window row the engine makes three things durable beside the output (hidden names, `atomic`): the
rows written into each output's `.partial.tif`, the carry (what the finished row adds to the next row's
overlap) and a progress record. The record names the run it belongs to (`run_signature`: inputs, options,
engine and rsneo version) and holds a digest of every finished window row of each output, so saved state is
trusted only when the partial files and the carry read back to exactly that. Anything else is discarded with
one notice (`ResumeNotice`) and the run starts over.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rasterio.errors import RasterioError
from rasterio.windows import Window

from rsneo import atomic
from rsneo.errors import InputError
from rsneo.io.cog import gdal_env, hidden_path
from rsneo.io.dataset import open_raster
from rsneo.io.runstate import notice_discarded


@dataclass
class Progress:
    """What has been finished, stored beside the output; `signature` ties it to one input and setting.

    `digests[name]` holds one digest per finished window row of output `name` (its rows as written);
    `finished[name]` the SHA-256 of an output already turned into its final COG.
    """

    signature: str
    rows_done: int = 0
    digests: dict[str, list[str]] = field(default_factory=dict)
    finished: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResumeContext:
    """What saved state must fit to be resumed: this run's outputs, its signature and its window layout."""

    out_path: Path
    signature: str
    outputs: dict[str, Path]  # product name -> final path
    rows: list[int]  # window row offsets
    stride: int
    span: int  # columns the windows cover
    overlap: int
    grid: dict  # width, height, crs, transform

    @property
    def progress_path(self) -> Path:
        return progress_path(self.out_path)


def run_signature(**settings: object) -> str:
    """A short hash of everything that changes the output (inputs, classes, model, window plan)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def digest(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()[:32]


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def progress_path(out_path: Path) -> Path:
    return hidden_path(out_path, "progress.json")


def save_progress(run: ResumeContext, progress: Progress) -> None:
    atomic.write_text(run.progress_path, json.dumps(asdict(progress)))


def save_row(run: ResumeContext, progress: Progress, carry: np.ndarray) -> None:
    """Make a finished window row durable: the carry for the next row, then the record, then the carry of
    the row before goes (the partial files were flushed by the caller)."""
    _save_carry(run.out_path, progress.rows_done, carry)
    save_progress(run, progress)
    clear_carries(run.out_path, keep=progress.rows_done)


def saved_state(run: ResumeContext) -> tuple[Progress, np.ndarray | None]:
    """Progress and carry of an interrupted run of this signature, each part checked; else a fresh start.

    State that fails a check is removed with one `ResumeNotice`; leftovers without a progress record (a run
    stopped inside its first window row) are removed silently.
    """
    fresh = Progress(run.signature), None
    if not run.progress_path.exists():
        discard_partial(run.out_path)
        return fresh
    checked = _check_state(run)
    if isinstance(checked, str):
        notice_discarded(run.out_path, f"saved state of an interrupted run {checked}")
        discard_partial(run.out_path)
        return fresh
    return checked


def _check_state(run: ResumeContext) -> tuple[Progress, np.ndarray | None] | str:
    """The saved (progress, carry) if every part reads back as recorded, else why not (one phrase)."""
    try:
        saved = Progress(**json.loads(run.progress_path.read_text()))
        rows_done = int(saved.rows_done)
        if not isinstance(saved.digests, dict) or not isinstance(saved.finished, dict):
            raise TypeError("digests and finished must be objects")
    except (OSError, ValueError, TypeError):  # unreadable, truncated or another layout
        return "is unreadable"
    if saved.signature != run.signature:
        return "belongs to another input, option or rsneo version"
    if not 0 < rows_done <= len(run.rows) or set(saved.finished) - set(run.outputs):
        return "is inconsistent"
    for name, path in run.outputs.items():
        if name in saved.finished:
            if not path.exists() or file_digest(path) != saved.finished[name]:
                return f"does not match {path.name}"
            continue
        digests = saved.digests.get(name)
        if not isinstance(digests, list) or len(digests) != rows_done:
            return "is inconsistent"
        if not _partial_matches(hidden_path(path, "partial.tif"), digests, run):
            return f"does not match the partial {path.name}"
    carry = None
    if rows_done < len(run.rows):
        carry = _saved_carry(run, rows_done)
        if isinstance(carry, str):
            return carry
    saved.rows_done = rows_done
    return saved, carry


def _saved_carry(run: ResumeContext, rows_done: int) -> np.ndarray | str:
    """The carry saved after `rows_done` window rows, if it reads back whole and fits; else why not."""
    try:
        # our own file handle: np.load leaves it open when the archive is damaged
        with open(_carry_path(run.out_path, rows_done), "rb") as f, np.load(f, allow_pickle=False) as archive:
            carry = archive["carry"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return "has an unreadable carry"
    if (
        carry.dtype != np.float32
        or carry.ndim != 3
        or carry.shape[0] < 3
        or carry.shape[1:] != (run.overlap, run.span)
        or not np.isfinite(carry).all()
    ):
        return "has a carry of another shape"
    return carry


def _partial_matches(partial: Path, digests: list[str], run: ResumeContext) -> bool:
    """Whether the partial GeoTIFF is on this grid and its finished window rows are the recorded ones."""
    grid, rows = run.grid, run.rows
    try:
        with gdal_env(), open_raster(partial) as src:
            shape = (src.width, src.height, src.count, src.dtypes[0])
            if shape != (grid["width"], grid["height"], 1, "uint8"):
                return False
            if src.crs != grid["crs"] or not src.transform.almost_equals(grid["transform"]):
                return False
            for index, expected in enumerate(digests):
                top = rows[index]
                height = grid["height"] - top if index + 1 == len(rows) else run.stride
                if digest(src.read(1, window=Window(0, top, grid["width"], height))) != expected:
                    return False
    except (InputError, RasterioError):
        return False
    return True


def confidence_path(out_path: Path) -> Path:
    """Where the confidence COG of the class map `out_path` goes: `<stem>_confidence.tif` beside it."""
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}_confidence.tif")


def discard_partial(out_path: Path) -> None:
    """Remove every trace of an unfinished run for `out_path` (partial COGs, progress, carries)."""
    out_path = Path(out_path)
    for suffix in ("partial.tif", "cog.tif", "progress.json"):
        hidden_path(out_path, suffix).unlink(missing_ok=True)
    hidden_path(progress_path(out_path), "partial").unlink(missing_ok=True)  # a write cut short
    for suffix in ("partial.tif", "cog.tif"):
        hidden_path(confidence_path(out_path), suffix).unlink(missing_ok=True)
    clear_carries(out_path)


def _carry_path(out_path: Path, rows_done: int) -> Path:
    return hidden_path(out_path, f"carry{rows_done}.npz")


def _save_carry(out_path: Path, rows_done: int, carry: np.ndarray) -> None:
    with atomic.atomic_path(_carry_path(out_path, rows_done), "tmp.npz") as tmp:  # savez wants .npz
        np.savez(tmp, carry=carry)


def clear_carries(out_path: Path, keep: int | None = None) -> None:
    """Remove the saved carries of `out_path`, all of them or all but the one after `keep` rows."""
    for path in out_path.parent.glob(f".{out_path.name}.carry*.npz"):
        if keep is None or path != _carry_path(out_path, keep):
            path.unlink(missing_ok=True)
