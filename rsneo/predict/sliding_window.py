"""Sliding-window inference over rasters of any size, with flat memory and resumable output.

window source -> batches of overlapping windows -> `predict_fn` -> blended accumulation (overlap weights) ->
finished blocks -> `CogBlockWriter`. Windows run one window row at a time, a batch of windows at a time, left
to right. A block buffer holds only the columns of the current batch (C x size x batch width); columns no
later window of the row reaches are written at once, and their lower `overlap` rows go to a carry (C x overlap
x raster width) that the next window row starts from. So memory is flat in the raster's height and grows with
its width only by that thin carry. After every window row the written blocks, the carry and a progress record
are made durable: an interrupted run started again with the same settings continues at the next window row.
The final COG appears only when everything is done (`CogBlockWriter.finish`).

Saved state is trusted only after checking it: the progress record names the run it belongs to (inputs,
options, engine and rsneo version), holds a digest of every finished window row of each output, and the
partial files and the carry must read back to exactly that. Anything else is discarded with one notice
(`ResumeNotice`) and the run starts over; an input that cannot be read discards it too (nothing left behind).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from rsneo import atomic
from rsneo.errors import InputError
from rsneo.io.cog import NODATA_CLASS, ClassLegend, CogBlockWriter, gdal_env, hidden_path
from rsneo.io.dataset import open_raster
from rsneo.io.runstate import notice_discarded, run_identity
from rsneo.io.windows import RasterWindows

ENGINE_VERSION = 3  # saved progress of another engine version is never resumed
# pixels (batch, ..., size, size), valid (batch, size, size) -> probabilities (batch, channels, size, size)
PredictFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
# blended (channels, rows, cols) probabilities -> class values (rows, cols) uint8, confidence (rows, cols)
ClassifyFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def argmax_classes(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The default decoding: the most probable channel and its probability."""
    return probs.argmax(0).astype(np.uint8), probs.max(0)


@dataclass(frozen=True)
class WindowPlan:
    """Square windows of `size` pixels overlapping by `overlap`; `batch_size` windows per model call."""

    size: int = 256
    overlap: int = 32
    batch_size: int = 4

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < self.size:
            raise ValueError(
                f"window overlap must be in [0, size), got overlap={self.overlap} size={self.size}"
            )

    @property
    def stride(self) -> int:
        return self.size - self.overlap

    def starts(self, length: int) -> list[int]:
        """Window offsets along one axis covering [0, length), every `stride` pixels.

        The stride stays regular (the last window may hang over the end, read as no data), so exactly
        `overlap` rows are ever carried from one window row to the next.
        """
        return list(range(0, max(length - self.overlap, 1), self.stride))


def blend_weights(size: int, overlap: int) -> np.ndarray:
    """(size, size) weights: 1 in the middle, ramping down linearly over the overlap so seams blend."""
    ramp = np.ones(size, np.float32)
    if overlap > 0:
        edge = (np.arange(overlap, dtype=np.float32) + 1.0) / (overlap + 1.0)
        ramp[:overlap] = edge
        ramp[size - overlap :] = np.minimum(ramp[size - overlap :], edge[::-1])
    return np.outer(ramp, ramp)


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


def run_signature(**settings: object) -> str:
    """A short hash of everything that changes the output (inputs, classes, model, window plan)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _digest(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()[:32]


def _file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _windows_of_row(row: int, cols: list[int], plan: WindowPlan) -> Iterator[list[tuple[int, int]]]:
    for i in range(0, len(cols), plan.batch_size):
        yield [(row, c) for c in cols[i : i + plan.batch_size]]


def predict_raster(
    source: RasterWindows,
    predict_fn: PredictFn,
    out_path: Path,
    *,
    legend: ClassLegend,
    crs: rasterio.crs.CRS | None,
    transform: rasterio.Affine,
    plan: WindowPlan = WindowPlan(),
    signature: str = "",
    confidence: bool = True,
    show_progress: bool = False,
    stop_after_rows: int | None = None,
    classify: ClassifyFn = argmax_classes,
    keep_state: bool = False,
) -> Path | None:
    """Classify `source` window by window into a COG at `out_path` (argmax class, optional confidence band).

    `classify` turns blended probabilities into class values (default: argmax). Pixels invalid in the input
    get `NODATA_CLASS`. Returns the COG path, or None when `stop_after_rows` (used to simulate an
    interruption) stopped the run early; the partial state then stays for a resumed call. With `keep_state`
    the record of the completed map stays too, so a caller interrupted while writing its other products
    reuses the map; the caller removes it (`discard_partial`) when everything is written.
    """
    out_path = Path(out_path)
    progress_path = hidden_path(out_path, "progress.json")
    # what the engine itself knows also decides whether saved progress fits this run
    signature = run_signature(
        caller=signature, plan=plan, size=(source.width, source.height), legend=legend, confidence=confidence,
        engine=ENGINE_VERSION, crs=crs, transform=transform, **run_identity(),
    )  # fmt: skip
    rows, cols = plan.starts(source.height), plan.starts(source.width)
    size, stride = plan.size, plan.stride
    weights = blend_weights(size, plan.overlap)
    span = cols[-1] + size  # columns the windows cover (the last ones may hang over the raster's edge)
    outputs = {"classes": out_path, **({"confidence": confidence_path(out_path)} if confidence else {})}
    grid = dict(width=source.width, height=source.height, crs=crs, transform=transform)
    # Accumulator channels C: weighted probabilities (K), weight sum, valid count. `carry` holds what the
    # previous window row added to the first `overlap` rows of this one, for every column: (C, overlap, span).
    run = ResumeContext(out_path, signature, outputs, rows, stride, span, plan.overlap, grid)
    progress, carry = _saved_state(run)
    if progress.rows_done == len(rows) and set(progress.finished) == set(outputs):
        return out_path  # a completed map whose record the caller kept: nothing to do
    resume = progress.rows_done > 0
    writers = {
        name: CogBlockWriter(
            path,
            legend=legend if name == "classes" else None,
            description="class" if name == "classes" else "confidence_percent",
            resume=resume,
            **grid,
        )  # fmt: skip
        for name, path in outputs.items()
        if name not in progress.finished
    }
    row_pieces: dict[str, list[np.ndarray]] = {name: [] for name in writers}

    def emit(block: np.ndarray, top: int, left: int, last_row: bool) -> None:
        """Write the finished part of `block` (C, size, w): rows [top, top+stride) or to the raster's end."""
        rows_done = source.height - top if last_row else stride
        width = min(block.shape[2], source.width - left)
        if carry is not None and not last_row:  # its lower overlap rows belong to the next window row
            carry[:, :, left : left + block.shape[2]] = block[:, stride:]
        if width <= 0:
            return
        final = block[:, :rows_done, :width]
        probs = final[:-2] / np.maximum(final[-2], 1e-12)  # (K, rows, width)
        classes, best = classify(probs)
        conf = np.clip(np.round(best * 100.0), 0, 100).astype(np.uint8)
        invalid = final[-1] <= 0
        classes[invalid] = NODATA_CLASS
        conf[invalid] = 0
        window = Window(left, top, width, rows_done)
        for name, values in (("classes", classes), ("confidence", conf)):
            if name in writers:
                writers[name].write(window, values)
                row_pieces[name].append(values.astype(np.uint8, copy=False))

    first_row = progress.rows_done
    bar = _progress_bar(show_progress, len(rows) * len(cols), first_row * len(cols))
    try:
        for index in range(first_row, len(rows)):
            top, last_row = rows[index], index + 1 == len(rows)
            block: np.ndarray | None = None  # (C, size, w): columns [left, left + w) of this window row
            left = 0
            batches = list(_windows_of_row(top, cols, plan))
            for number, batch in enumerate(batches):
                reads = [source.read(r, c, size) for r, c in batch]
                pixels = np.stack([p for p, _ in reads])  # (batch, ..., size, size)
                valid = np.stack([v for _, v in reads])  # (batch, size, size)
                probs = np.asarray(predict_fn(pixels, valid), np.float32)  # (batch, K, size, size)
                if carry is None:
                    carry = np.zeros((probs.shape[1] + 2, plan.overlap, span), np.float32)
                # grow the block to the batch's right edge; new columns start from the previous row's carry
                end = batch[-1][1] + size
                old = 0 if block is None else block.shape[2]
                grown = np.zeros((carry.shape[0], size, end - left), np.float32)
                if block is not None:
                    grown[:, :, :old] = block
                grown[:, : plan.overlap, old:] = carry[:, :, left + old : end]
                block = grown
                for (_, c), p, v in zip(batch, probs, valid, strict=True):
                    x = c - left
                    block[:-2, :, x : x + size] += p * weights
                    block[-2, :, x : x + size] += weights
                    block[-1, :, x : x + size] += v
                # columns left of the next batch's first window are finished for this window row
                right = batches[number + 1][0][1] if number + 1 < len(batches) else end
                emit(block[:, :, : right - left], top, left, last_row)
                block, left = block[:, :, right - left :], right
                if bar is not None:
                    bar[0].advance(bar[1], len(batch))
            for name, writer in writers.items():
                writer.flush()
                progress.digests.setdefault(name, []).append(_digest(np.concatenate(row_pieces[name], 1)))
                row_pieces[name].clear()
            progress.rows_done = index + 1
            _save_carry(out_path, index + 1, carry)
            atomic.write_text(progress_path, json.dumps(asdict(progress)))
            _clear_carries(out_path, keep=index + 1)
            if stop_after_rows is not None and index + 1 - first_row >= stop_after_rows:
                for writer in writers.values():
                    writer.close()
                return None
        for name in sorted(writers, key=lambda n: n == "classes"):  # the class map last
            progress.finished[name] = _file_digest(writers[name].finish())
            atomic.write_text(progress_path, json.dumps(asdict(progress)))
    except InputError:  # an input that cannot be read: its partial products are worthless
        for writer in writers.values():
            writer.abort()
        discard_partial(out_path)
        raise
    except BaseException:
        for writer in writers.values():
            writer.close()
        raise
    finally:
        if bar is not None:
            bar[0].stop()
    _clear_carries(out_path)
    if not keep_state:
        progress_path.unlink(missing_ok=True)
    return out_path


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


def _saved_state(run: ResumeContext) -> tuple[Progress, np.ndarray | None]:
    """Progress and carry of an interrupted run of this signature, each part checked; else a fresh start.

    State that fails a check is removed with one `ResumeNotice`; leftovers without a progress record (a run
    stopped inside its first window row) are removed silently.
    """
    fresh = Progress(run.signature), None
    progress_path = hidden_path(run.out_path, "progress.json")
    if not progress_path.exists():
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
    rows = run.rows
    try:
        saved = Progress(**json.loads(hidden_path(run.out_path, "progress.json").read_text()))
        rows_done = int(saved.rows_done)
        if not isinstance(saved.digests, dict) or not isinstance(saved.finished, dict):
            raise TypeError("digests and finished must be objects")
    except (OSError, ValueError, TypeError):  # unreadable, truncated or another layout
        return "is unreadable"
    if saved.signature != run.signature:
        return "belongs to another input, option or rsneo version"
    if not 0 < rows_done <= len(rows) or set(saved.finished) - set(run.outputs):
        return "is inconsistent"
    for name, path in run.outputs.items():
        if name in saved.finished:
            if not path.exists() or _file_digest(path) != saved.finished[name]:
                return f"does not match {path.name}"
            continue
        digests = saved.digests.get(name)
        if not isinstance(digests, list) or len(digests) != rows_done:
            return "is inconsistent"
        if not _partial_matches(hidden_path(path, "partial.tif"), digests, rows, run.stride, run.grid):
            return f"does not match the partial {path.name}"
    carry = None
    if rows_done < len(rows):
        try:
            # our own file handle: np.load leaves it open when the archive is damaged
            with (
                open(_carry_path(run.out_path, rows_done), "rb") as f,
                np.load(f, allow_pickle=False) as archive,
            ):
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
    saved.rows_done = rows_done
    return saved, carry


def _partial_matches(partial: Path, digests: list[str], rows: list[int], stride: int, grid: dict) -> bool:
    """Whether the partial GeoTIFF is on this grid and its finished window rows are the recorded ones."""
    try:
        with gdal_env(), open_raster(partial) as src:
            shape = (src.width, src.height, src.count, src.dtypes[0])
            if shape != (grid["width"], grid["height"], 1, "uint8"):
                return False
            if src.crs != grid["crs"] or not src.transform.almost_equals(grid["transform"]):
                return False
            for index, expected in enumerate(digests):
                top = rows[index]
                height = grid["height"] - top if index + 1 == len(rows) else stride
                if _digest(src.read(1, window=Window(0, top, grid["width"], height))) != expected:
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
    hidden_path(hidden_path(out_path, "progress.json"), "partial").unlink(missing_ok=True)  # write cut short
    for suffix in ("partial.tif", "cog.tif"):
        hidden_path(confidence_path(out_path), suffix).unlink(missing_ok=True)
    _clear_carries(out_path)


def _carry_path(out_path: Path, rows_done: int) -> Path:
    return hidden_path(out_path, f"carry{rows_done}.npz")


def _save_carry(out_path: Path, rows_done: int, carry: np.ndarray) -> None:
    with atomic.atomic_path(_carry_path(out_path, rows_done), "tmp.npz") as tmp:  # savez wants .npz
        np.savez(tmp, carry=carry)


def _clear_carries(out_path: Path, keep: int | None = None) -> None:
    for path in out_path.parent.glob(f".{out_path.name}.carry*.npz"):
        if keep is None or path != _carry_path(out_path, keep):
            path.unlink(missing_ok=True)


def _progress_bar(show: bool, total: int, completed: int):
    if not show:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("windows"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    )
    task = bar.add_task("windows", total=total, completed=completed)
    bar.start()
    return bar, task
