"""Streaming shards of `Sample`s: writing them (parallel, resumable, atomic) and streaming them back to many
ranks and DataLoader workers, from a local folder or object storage (`https://`, `s3://`).

Shards are WebDataset tars (`rsneo.data.shard_format`: the format, the reader, and why WebDataset). Next to
each `shard-NNNNN.tar` a `shard-NNNNN.json` records its samples and per-band sums; it is written after the
tar and marks the shard done, so an interrupted run redoes only unfinished shards. Every file is written
under a temporary name in the destination folder and renamed when complete. `manifest.json` (with
`format_version`) is written last, with per-band mean/std over the whole archive.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from rsneo import atomic
from rsneo.data.sample import Sample
from rsneo.data.shard_format import FORMAT, FORMAT_VERSION, is_url, iter_shard, join, read_json, shard_bytes
from rsneo.errors import InputError
from rsneo.sensors import get_sensor

MANIFEST = "manifest.json"
PLAN = ".prepare.json"  # what a run that has not finished yet was asked for (recipe, tile size, ...)


def statistics_key(scene: Any) -> str:
    """The manifest's statistics key of a scene's band set: its sensor's name, with the bands when they are
    not all of the sensor's in its order (so archives of other band sets can share a folder)."""
    bands = [str(b) for b in scene["band"].values]
    sensor = get_sensor(scene.attrs["sensor"])
    return sensor.name if bands == list(sensor.band_names) else f"{sensor.name}/{'+'.join(bands)}"


def _band_sums(sample: Sample) -> dict[str, tuple[list[str], list[list[float]]]]:
    """Per band set of the sample's scenes: bands, [count, sum, sum of squares] per band of finite values."""
    out = {}
    for _, scene in sample.scenes():
        values = np.moveaxis(scene.values, 1, 0).reshape(scene.sizes["band"], -1).astype(np.float64)
        ok = np.isfinite(values)
        v = np.where(ok, values, 0.0)
        sums = [ok.sum(1).tolist(), v.sum(1).tolist(), (v * v).sum(1).tolist()]
        out[statistics_key(scene)] = ([str(b) for b in scene["band"].values], sums)
    return out


def write_shard(path: Path, samples: Sequence[Sample]) -> dict[str, Any]:
    """Write one shard tar and its record atomically; returns the record."""
    sums: dict[str, np.ndarray] = {}
    bands: dict[str, list[str]] = {}
    for sample in samples:
        for key, (names, s) in _band_sums(sample).items():
            sums[key] = sums.get(key, 0) + np.array(s)
            bands[key] = names
    atomic.write_bytes(path, shard_bytes(list(samples)))
    record = {
        "shard": path.name,
        "samples": len(samples),
        "keys": [s.name for s in samples],
        "sums": {k: {"bands": bands[k], "count_sum_sumsq": v.tolist()} for k, v in sums.items()},
    }
    atomic.write_bytes(path.with_suffix(".json"), json.dumps(record).encode())
    return record


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a shard folder (local or a URL prefix), refusing folders of another format version."""
    path = join(folder, MANIFEST)
    if not is_url(folder) and not Path(path).is_file():
        raise InputError(
            f"{folder}: expected a shard folder with {MANIFEST} (run `rsneo prepare`), found none"
        )
    try:
        manifest = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{folder}: shard folder of format {manifest.get('format')!r} version "
            f"{manifest.get('format_version')}; expected {FORMAT!r} version {FORMAT_VERSION} "
            "(re-run `rsneo prepare` with this rsneo)"
        )
    return manifest


def merged_statistics(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, list]]:
    """Per array: band names, valid pixel counts, mean and std over every shard."""
    totals: dict[str, np.ndarray] = {}
    bands: dict[str, list[str]] = {}
    for record in records:
        for name, entry in record["sums"].items():
            totals[name] = totals.get(name, 0) + np.array(entry["count_sum_sumsq"], dtype=np.float64)
            bands[name] = entry["bands"]
    out = {}
    for name, (count, total, sumsq) in totals.items():
        n = np.maximum(count, 1)
        mean = total / n
        std = np.sqrt(np.maximum(sumsq / n - mean**2, 0.0))
        out[name] = {
            "bands": bands[name],
            "count": count.tolist(),
            "mean": mean.tolist(),
            "std": std.tolist(),
        }
    return out


def _run_job(job: tuple[Path, Callable[[Any], list[Sample]], list[Any]]) -> dict[str, Any]:
    path, load, items = job
    samples = [s for item in items for s in load(item)]
    return write_shard(path, samples)


def prepare_shards(
    items: Sequence[Any],
    load: Callable[[Any], list[Sample]],
    out: str | Path,
    items_per_shard: int,
    workers: int = 1,
    info: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Turn `items` into shards under `out`: `load(item)` gives an item's samples (a picklable function).

    Items are split into shards in order, so a re-run maps the same items to the same shards; shards whose
    record exists are kept. Runs `workers` processes. Returns the manifest.
    """
    out = Path(out)
    if (out / MANIFEST).exists():
        read_manifest(out)  # refuses another version's folder before touching it
    plan = json.dumps(info or {}, sort_keys=True)
    if (out / PLAN).exists():  # an unfinished run: its shards are reused only if made the same way
        earlier = (out / PLAN).read_text()
        if earlier != plan:
            raise InputError(
                f"{out}: holds the shards of an unfinished run made with {earlier}; expected {plan} to "
                "resume there (or choose another folder)"
            )
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    if not (out / PLAN).exists():
        atomic.write_bytes(out / PLAN, plan.encode())
    for stale in out.glob(".*.partial"):  # a crashed run's partial files (atomic's temporary names)
        stale.unlink()
    chunks = [list(items[i : i + items_per_shard]) for i in range(0, len(items), items_per_shard)]
    paths = [out / f"shard-{i:05d}.tar" for i in range(len(chunks))]
    records: dict[int, dict[str, Any]] = {}
    for i, path in enumerate(paths):
        record_path = path.with_suffix(".json")
        if path.exists() and record_path.exists():
            records[i] = json.loads(record_path.read_text())
    todo = [i for i in range(len(chunks)) if i not in records]
    try:
        with _progress(progress, len(chunks), len(records)) as advance:
            if workers > 1 and len(todo) > 1:
                with ProcessPoolExecutor(max_workers=workers) as pool:
                    jobs = [(paths[i], load, chunks[i]) for i in todo]
                    for i, record in zip(todo, pool.map(_run_job, jobs), strict=True):
                        records[i] = record
                        advance()
            else:
                for i in todo:
                    records[i] = _run_job((paths[i], load, chunks[i]))
                    advance()
    except BaseException:
        if created and not records:
            for leftover in out.iterdir():
                leftover.unlink()
            out.rmdir()
        raise
    ordered = [records[i] for i in range(len(chunks))]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **(info or {}),
        "num_samples": sum(r["samples"] for r in ordered),
        "shards": [{"name": r["shard"], "samples": r["samples"]} for r in ordered],
        "statistics": merged_statistics(ordered),
    }
    atomic.write_bytes(out / MANIFEST, json.dumps(manifest, indent=1).encode())
    return manifest


class _progress:
    """A rich progress bar over shards (or nothing); usable as `with _progress(...) as advance`."""

    def __init__(self, enabled: bool, total: int, done: int) -> None:
        self.enabled, self.total, self.done = enabled, total, done

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
        from rich.progress import Progress

        self.bar = Progress(transient=False)
        self.bar.start()
        task = self.bar.add_task("shards", total=self.total, completed=self.done)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()


def worker_batches(batches: int, worker: int, workers: int) -> int:
    """How many of a rank's first `batches` batches DataLoader worker `worker` of `workers` made.

    A DataLoader over an iterable dataset takes batch j from worker j % workers, in order, so this is exact.
    """
    return max(0, (batches - worker + workers - 1) // workers)


def shuffle_order(count: int, buffer: int, rng: np.random.Generator) -> list[int]:
    """The order in which a shuffle buffer of `buffer` samples yields a stream of `count` samples.

    Computed on indices, so a stream can be resumed: the decoded samples held at any time are at most
    `buffer` (those read but not yet yielded).
    """
    order: list[int] = []
    pool: list[int] = []
    for i in range(count):
        pool.append(i)
        if len(pool) >= buffer:
            order.append(pool.pop(int(rng.integers(len(pool)))))
    while pool:
        order.append(pool.pop(int(rng.integers(len(pool)))))
    return order


class ShardDataset(IterableDataset):
    """Streams a prepared shard folder (a local path or a URL prefix such as `https://host/shards` or
    `s3://bucket/shards`) `Sample` by `Sample`: never more than `buffer` decoded samples in memory.

    The samples of one pass (epoch) are the shards in order (a seeded permutation per epoch with `shuffle`),
    concatenated; that stream is cut into `world x workers` contiguous slices, one per (rank, DataLoader
    worker), so together they read every sample once and each reads only its own stretch of the archive.
    With `shuffle` each slice goes through a seeded shuffle buffer. `repeat` makes the stream endless (one
    pass after another, the step count ends training); `start_batch` (batches of `batch_size` this rank has
    already trained on) resumes mid-epoch exactly where an uninterrupted run would be. `transform` maps
    each sample (e.g. to a training document) inside the worker. `rank`/`world` default to the process group.
    """

    def __init__(
        self, folder: str | Path, shuffle: bool = False, seed: int = 0, buffer: int = 64,
        shards: Sequence[int] | None = None, repeat: bool = False,
        transform: Callable[[dict], Any] | None = None,
        rank: int | None = None, world: int | None = None, batch_size: int = 1,
    ) -> None:  # fmt: skip
        self.folder = str(folder) if is_url(folder) else Path(folder)
        self.manifest = read_manifest(self.folder)
        entries = self.manifest["shards"]
        chosen = list(range(len(entries))) if shards is None else list(shards)
        self.shards = [join(self.folder, entries[i]["name"]) for i in chosen]
        self.counts = [int(entries[i]["samples"]) for i in chosen]
        missing = [Path(p).name for p in self.shards if not is_url(p) and not Path(p).is_file()]
        if missing:
            raise InputError(f"{self.folder}: manifest lists shards {missing} that are missing")
        self.shuffle, self.seed, self.buffer, self.epoch = shuffle, seed, max(1, buffer), 0
        self.repeat, self.transform, self.rank, self.world = repeat, transform, rank, world
        self.batch_size, self.start_batch = batch_size, 0

    @property
    def num_samples(self) -> int:
        return sum(self.counts)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _slot(self) -> tuple[int, int, int, int]:
        """(rank, world, worker, workers) of the calling process."""
        rank, world = self.rank, self.world
        if rank is None or world is None:
            rank, world = 0, 1
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        worker = get_worker_info()
        wid, wnum = (worker.id, worker.num_workers) if worker else (0, 1)
        return rank, world, wid, wnum

    def slice_of(self, epoch: int, slot: int, slots: int) -> list[tuple[int, int]]:
        """(shard, position) of the samples slot `slot` of `slots` reads in pass `epoch`, in read order."""
        order = list(range(len(self.shards)))
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(len(order), generator=generator).tolist()
        stream = [(s, i) for s in order for i in range(self.counts[s])]
        total = len(stream)
        return stream[slot * total // slots : (slot + 1) * total // slots]

    def __iter__(self) -> Iterator[Any]:
        rank, world, wid, wnum = self._slot()
        # a resumed DataLoader asks worker 0 first: it plays the worker that made batch `start_batch`
        role = (wid + self.start_batch) % wnum
        slot, slots = rank * wnum + role, world * wnum
        skip = worker_batches(self.start_batch, role, wnum) * self.batch_size
        epoch = self.epoch
        while True:
            mine = self.slice_of(epoch, slot, slots)
            if not mine and (not self.repeat or self.num_samples == 0):
                return
            order = list(range(len(mine)))
            if self.shuffle:
                rng = np.random.default_rng([self.seed, epoch, slot])
                order = shuffle_order(len(mine), self.buffer, rng)
            if skip >= len(order) and self.repeat and mine:
                skip -= len(order)  # a whole pass already trained on: nothing to read
            else:
                yield from self._read(mine, order[skip:])
                skip = 0
            if not self.repeat:
                return
            epoch += 1

    def _read(self, mine: list[tuple[int, int]], order: list[int]) -> Iterator[Any]:
        """Yield the samples `mine[order[k]]` in order of k, reading `mine` front to back once."""
        wanted = set(order)
        held: dict[int, Any] = {}
        pending = iter(order)
        nxt = next(pending, None)
        position = {(s, i): k for k, (s, i) in enumerate(mine)}
        for shard in dict.fromkeys(s for s, _ in mine):
            keep = {i for s, i in mine if s == shard and position[(s, i)] in wanted}
            if not keep:
                continue
            for index, sample in iter_shard(self.shards[shard], keep.__contains__):
                held[position[(shard, index)]] = self.transform(sample) if self.transform else sample
                while nxt is not None and nxt in held:
                    yield held.pop(nxt)
                    nxt = next(pending, None)
        while nxt is not None and nxt in held:
            yield held.pop(nxt)
            nxt = next(pending, None)
