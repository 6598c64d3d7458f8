"""Sliding-window inference over rasters of any size, with flat memory and resumable output: the engine every
product's map is made by.

A product hands the engine a `MapSpec`: its window predictor (windows -> class probabilities), the legend of
its class values, how blended probabilities become classes, and what it measured on the scene. The engine
walks the raster: window source -> batches of overlapping windows -> predictor -> blended accumulation
(overlap weights) -> finished blocks -> `CogBlockWriter`. Windows run one window row at a time, a batch of
windows at a time, left to right. A block buffer holds only the columns of the current batch (C x size x batch
width); columns no later window of the row reaches are written at once, and their lower `overlap` rows go to
a carry (C x overlap x raster width) that the next window row starts from. So memory is flat in the raster's
height and grows with its width only by that thin carry. After every window row the written blocks, the carry
and a progress record are made durable (`rsneo.predict.resume`): an interrupted run started again with the
same settings continues at the next window row. The final COG appears only when everything is done
(`CogBlockWriter.finish`).

Reading and writing overlap the model (`_Overlap`): the next batch of windows is read on a reader thread
while the model works on the current one, and finished blocks are classified and written on a writer thread,
drained before a window row is made durable. GDAL's decoding and compression and numpy's reductions release
the GIL, so on a machine with a core to spare the wall time approaches the model's.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from rsneo.errors import InputError
from rsneo.io.cog import NODATA_CLASS, ClassLegend, CogBlockWriter
from rsneo.io.runstate import run_identity
from rsneo.io.sieve import MinArea, check_min_area, sieve_class_map
from rsneo.io.windows import RasterWindows
from rsneo.predict import resume
from rsneo.predict.resume import Progress, ResumeContext, confidence_path, run_signature

ENGINE_VERSION = 3  # saved progress of another engine version is never resumed
# pixels (batch, ..., size, size), valid (batch, size, size) -> probabilities (batch, channels, size, size)
PredictFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
# blended (channels, rows, cols) probabilities -> class values (rows, cols) uint8, confidence (rows, cols)
ClassifyFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
Advance = Callable[[int], None]


def argmax_classes(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The default decoding: the most probable channel and its probability."""
    return probs.argmax(0).astype(np.uint8), probs.max(0)


@dataclass(frozen=True)
class MapSpec:
    """One product's map as the engine makes it.

    `predict` turns a batch of windows into class probabilities, `classify` the blended probabilities into
    class values of `legend`; `calibration` holds what the product measured on this scene (thresholds, cuts),
    so saved progress of a scene measured otherwise is not resumed.
    """

    predict: PredictFn
    legend: ClassLegend
    classify: ClassifyFn = argmax_classes
    calibration: tuple[float, ...] = ()


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


def predict_raster(
    source: RasterWindows,
    spec: MapSpec,
    out_path: Path,
    *,
    crs: rasterio.crs.CRS | None,
    transform: rasterio.Affine,
    plan: WindowPlan = WindowPlan(),
    signature: str = "",
    confidence: bool = True,
    keep_state: bool = False,
    show_progress: bool = False,
    min_area: MinArea | None = None,
) -> Path:
    """Classify `source` window by window into a COG at `out_path` (class values, optional confidence band).

    Pixels invalid in the input get `NODATA_CLASS`. `signature` names what else the map depends on (inputs,
    model, options). An interrupted run keeps its partial state for the next call with the same settings.
    With `keep_state` the record of the completed map stays too, so a caller interrupted while writing its
    other products reuses the map; the caller removes it (`resume.discard_partial`) once all is written.
    With `min_area`, regions of the class map smaller than it are merged into a neighbour before it becomes a
    COG (`rsneo.io.sieve`), so the map and the polygons traced from it agree; the confidence is not changed.
    """
    out_path = Path(out_path)
    if min_area is not None:
        check_min_area(min_area, crs is None)
    sieved = str(min_area) if min_area is not None and min_area.active else None
    signature = f"{signature}|sieved {sieved}" if sieved else signature
    run = _resume_context(source, spec, out_path, crs, transform, plan, signature, confidence)
    progress, carry = resume.saved_state(run)
    if progress.rows_done == len(run.rows) and set(progress.finished) == set(run.outputs):
        return out_path  # a completed map whose record the caller kept: nothing to do
    writers = _open_writers(run, spec.legend, progress)
    total = len(run.rows) * len(plan.starts(source.width))
    done = progress.rows_done * len(plan.starts(source.width))
    try:
        with _progress_bar(show_progress, total, done) as advance:
            _walk(source, spec, plan, run, writers, progress, carry, advance)
            for name in sorted(writers, key=lambda n: n == "classes"):  # the class map last
                if name == "classes" and sieved:
                    writers[name].close()
                    sieve_class_map(writers[name].partial, min_area)
                progress.finished[name] = resume.file_digest(writers[name].finish())
                resume.save_progress(run, progress)
    except InputError:  # an input that cannot be read: its partial products are worthless
        for writer in writers.values():
            writer.abort()
        resume.discard_partial(out_path)
        raise
    except BaseException:
        for writer in writers.values():
            writer.close()
        raise
    resume.clear_carries(out_path)
    if not keep_state:
        run.progress_path.unlink(missing_ok=True)
    return out_path


def _resume_context(source, spec, out_path, crs, transform, plan, signature, confidence) -> ResumeContext:
    """This run's outputs and window layout, signed with everything the engine itself knows as well."""
    signature = run_signature(
        caller=signature, calibration=spec.calibration, plan=plan, size=(source.width, source.height),
        legend=spec.legend, confidence=confidence, engine=ENGINE_VERSION, crs=crs, transform=transform,
        **run_identity(),
    )  # fmt: skip
    cols = plan.starts(source.width)
    outputs = {"classes": out_path, **({"confidence": confidence_path(out_path)} if confidence else {})}
    grid = dict(width=source.width, height=source.height, crs=crs, transform=transform)
    span = cols[-1] + plan.size  # columns the windows cover (the last ones may hang over the raster's edge)
    return ResumeContext(
        out_path, signature, outputs, plan.starts(source.height), plan.stride, span, plan.overlap, grid
    )


def _open_writers(run: ResumeContext, legend: ClassLegend, progress: Progress) -> dict[str, CogBlockWriter]:
    """A block writer for every output not finished yet, continuing its partial file when resuming."""
    return {
        name: CogBlockWriter(
            path,
            legend=legend if name == "classes" else None,
            description="class" if name == "classes" else "confidence_percent",
            resume=progress.rows_done > 0,
            **run.grid,
        )  # fmt: skip
        for name, path in run.outputs.items()
        if name not in progress.finished
    }


class _RowOutput:
    """Turns finished blocks of blended sums into class values and confidence, writes them, and keeps what
    one window row wrote for its digest."""

    def __init__(self, writers: dict[str, CogBlockWriter], classify: ClassifyFn, width: int, height: int):
        self.writers, self.classify = writers, classify
        self.width, self.height = width, height
        self.pieces: dict[str, list[np.ndarray]] = {name: [] for name in writers}

    def write(self, block: np.ndarray, top: int, left: int, rows: int) -> None:
        """Write the first `rows` rows of `block` (C, size, w): K channel sums, weight sum, valid count."""
        width = min(block.shape[2], self.width - left)
        if width <= 0:
            return
        final = block[:, :rows, :width]
        probs = final[:-2] / np.maximum(final[-2], 1e-12)  # (K, rows, width)
        classes, best = self.classify(probs)
        conf = np.clip(np.round(best * 100.0), 0, 100).astype(np.uint8)
        invalid = final[-1] <= 0
        classes[invalid] = NODATA_CLASS
        conf[invalid] = 0
        window = Window(left, top, width, rows)
        for name, values in (("classes", classes), ("confidence", conf)):
            if name in self.writers:
                self.writers[name].write(window, values)
                self.pieces[name].append(values.astype(np.uint8, copy=False))

    def finish_row(self, progress: Progress) -> None:
        """Flush every writer and record the digest of the window row it wrote."""
        for name, writer in self.writers.items():
            writer.flush()
            progress.digests.setdefault(name, []).append(resume.digest(np.concatenate(self.pieces[name], 1)))
            self.pieces[name].clear()


class _Overlap:
    """A reader thread that runs one batch of reads ahead of the model and a writer thread that writes
    finished blocks behind it, in order. Each thread alone touches its GDAL handles while it works (the
    readers' datasets, the block writers until `drain`), so no handle is used by two threads at once."""

    def __init__(self, threads: bool = True) -> None:
        self.threads = threads
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="rsneo-read")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="rsneo-write")
        self._writes: list[Future] = []

    @classmethod
    def from_env(cls) -> _Overlap:
        """RSNEO_OVERLAP=0 reads and writes on the calling thread (to compare, or for a GDAL driver that
        must stay on one thread)."""
        return cls(os.environ.get("RSNEO_OVERLAP", "1").strip() != "0")

    def read_ahead(self, reads: Iterable[Callable[[], tuple[np.ndarray, np.ndarray]]]) -> Iterator:
        """The results of `reads` in order; the next read is already running while a result is used."""
        if not self.threads:
            yield from (read() for read in reads)
            return
        pending: Future | None = None
        for read in reads:
            upcoming = self._reader.submit(read)
            if pending is not None:
                yield pending.result()
            pending = upcoming
        if pending is not None:
            yield pending.result()

    def write_behind(self, write: Callable[..., None], *args) -> None:
        if not self.threads:
            write(*args)
            return
        self._writes.append(self._writer.submit(write, *args))

    def drain(self) -> None:
        """Wait for every write so far; the first that failed raises here."""
        writes, self._writes = self._writes, []
        for future in writes:
            future.result()

    def close(self) -> None:
        """Stop both threads, dropping reads not started; writes already queued finish first."""
        self._reader.shutdown(wait=True, cancel_futures=True)
        self._writer.shutdown(wait=True)


def _read_batch(source: RasterWindows, top: int, batch: list[int], size: int) -> tuple[np.ndarray, ...]:
    """Pixels (batch, ..., size, size) and valid masks (batch, size, size) of the windows at `batch`."""
    reads = [source.read(top, c, size) for c in batch]
    return np.stack([p for p, _ in reads]), np.stack([v for _, v in reads])


def _walk(
    source: RasterWindows,
    spec: MapSpec,
    plan: WindowPlan,
    run: ResumeContext,
    writers: dict[str, CogBlockWriter],
    progress: Progress,
    carry: np.ndarray | None,
    advance: Advance,
) -> None:
    """The window rows not done yet, each made durable (`resume.save_row`) before the next starts."""
    cols = plan.starts(source.width)
    batches = [cols[i : i + plan.batch_size] for i in range(0, len(cols), plan.batch_size)]
    remaining = range(progress.rows_done, len(run.rows))
    overlap = _Overlap.from_env()
    try:
        reads = overlap.read_ahead(
            partial(_read_batch, source, run.rows[index], batch, plan.size)
            for index in remaining
            for batch in batches
        )
        output = _RowOutput(writers, spec.classify, source.width, source.height)
        row = _RowWalk(spec, plan, batches, reads, overlap, output, advance)
        for index in remaining:
            top, last_row = run.rows[index], index + 1 == len(run.rows)
            carry = row.walk(top, carry, run.span, source.height - top if last_row else plan.stride, last_row)
            overlap.drain()
            output.finish_row(progress)
            progress.rows_done = index + 1
            resume.save_row(run, progress, carry)
    finally:
        overlap.close()


@dataclass
class _RowWalk:
    """What every window row is walked with: the map, the plan, its column batches, the pixels read ahead, the
    writer behind and the progress bar."""

    spec: MapSpec
    plan: WindowPlan
    batches: list[list[int]]
    reads: Iterator[tuple[np.ndarray, ...]]
    overlap: _Overlap
    output: _RowOutput
    advance: Advance

    def __post_init__(self) -> None:
        self.weights = blend_weights(self.plan.size, self.plan.overlap)

    def walk(self, top: int, carry: np.ndarray | None, span: int, rows: int, last_row: bool) -> np.ndarray:
        """Predict one window row batch by batch, blending each batch into a block that starts from the
        previous row's `carry` (C, overlap, span); hand the first `rows` rows of every column no later window
        of the row reaches to the writer. Returns the next row's carry: this one's lower `overlap` rows."""
        size, overlap, batches = self.plan.size, self.plan.overlap, self.batches
        block: np.ndarray | None = None  # (C, size, w): columns [left, left + w) of this window row
        left = 0
        for number, batch in enumerate(batches):
            pixels, valid = next(self.reads)  # (batch, ..., size, size), (batch, size, size)
            probs = np.asarray(self.spec.predict(pixels, valid), np.float32)  # (batch, K, size, size)
            if carry is None:
                carry = np.zeros((probs.shape[1] + 2, overlap, span), np.float32)
            # grow the block to the batch's right edge; new columns start from the previous row's carry
            end = batch[-1] + size
            old = 0 if block is None else block.shape[2]
            grown = np.zeros((carry.shape[0], size, end - left), np.float32)
            if block is not None:
                grown[:, :, :old] = block
            grown[:, :overlap, old:] = carry[:, :, left + old : end]
            block = grown
            for c, p, v in zip(batch, probs, valid, strict=True):
                x = c - left
                block[:-2, :, x : x + size] += p * self.weights
                block[-2, :, x : x + size] += self.weights
                block[-1, :, x : x + size] += v
            # columns left of the next batch's first window are finished for this window row; nothing changes
            # them later (the next batch grows a new block), so the writer may read them while the model runs
            right = batches[number + 1][0] if number + 1 < len(batches) else end
            finished = block[:, :, : right - left]
            if not last_row:  # its lower overlap rows belong to the next window row
                carry[:, :, left : left + finished.shape[2]] = finished[:, self.plan.stride :]
            self.overlap.write_behind(self.output.write, finished, top, left, rows)
            block, left = block[:, :, right - left :], right
            self.advance(len(batch))
        return carry


def _json_progress(total: int, completed: int) -> Advance:
    """An `advance` that prints each step of the window count as one JSON line on stderr."""
    done = [completed]

    def advance(n: int) -> None:
        done[0] += n
        print(json.dumps({"stage": "windows", "done": done[0], "total": total}), file=sys.stderr, flush=True)

    return advance


@contextlib.contextmanager
def _progress_bar(show: bool, total: int, completed: int) -> Iterator[Advance]:
    """A transient rich bar of windows done (`advance(n)`), or nothing; with RSNEO_PROGRESS=json, JSON lines
    on stderr instead ({"stage": "windows", "done", "total"}: the QGIS plugin's progress)."""
    if os.environ.get("RSNEO_PROGRESS", "") == "json":
        yield _json_progress(total, completed)
        return
    if not show:
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("windows"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    )
    task = bar.add_task("windows", total=total, completed=completed)
    bar.start()
    try:
        yield lambda n: bar.advance(task, n)
    finally:
        bar.stop()
