"""A `Sample` in a WebDataset shard, and shards read from a local folder or object storage.

Format: WebDataset tars (https://github.com/webdataset/webdataset), written with its `TarWriter` and read with
its `tar_file_iterator`, so any WebDataset tool reads the shards too. Per sample `<key>.json` (the scenes'
sensor, bands, dates, CRS, transform and stored type; classes, split, labels, captions, statistics, origin)
and `<key>.<array>.npy` (`scene` (time, band, y, x) float32 with NaN = nodata, each partner by its name,
`mask` (y, x) int64). Arrays are saved and loaded with `allow_pickle=False`: a shard never runs code.

Why WebDataset rather than litdata: rsneo's shards were already tars of this layout; a tar stays readable by
`tar`, WebDataset and its random-access `wids`; and reading one is a single sequential stream, which object
storage serves well. litdata would add its own chunk format and an optimise step, and its resume and split
would replace rsneo's sample-level ones. Transport is fsspec (already a dependency): the same call opens a
local file, `https://` (aiohttp) and `s3://` (with s3fs installed), in-process, without curl or aws
subprocesses.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import fsspec
import numpy as np
from affine import Affine
from rasterio.crs import CRS
from webdataset.tariterators import tar_file_iterator
from webdataset.writer import TarWriter

from rsneo.data.sample import SCENE, Sample
from rsneo.errors import InputError
from rsneo.io.grid import Grid
from rsneo.io.scene import to_scene
from rsneo.sensors import get_sensor

FORMAT = "rsneo-shards"
FORMAT_VERSION = 2  # 2: WebDataset records of `rsneo.data.sample.Sample` (1: the home-made tar of 2026)


def is_url(location: str | Path) -> bool:
    return "://" in str(location)


def join(folder: str | Path, name: str) -> str:
    """`folder/name` for a local folder or a URL prefix."""
    return f"{str(folder).rstrip('/')}/{name}" if is_url(folder) else str(Path(folder) / name)


def open_stream(location: str | Path) -> IO[bytes]:
    """A binary stream of a local file or a URL (`https://`, `s3://`, any fsspec protocol)."""
    if not is_url(location):
        return open(location, "rb")  # noqa: SIM115 (the caller closes it)
    try:
        # a shard is read front to back once: over HTTP as one streamed response (no range requests)
        streamed = {"block_size": 0} if str(location).startswith(("http://", "https://")) else {}
        return fsspec.open(str(location), "rb", **streamed).open()
    except ImportError as exc:
        raise InputError(
            f"{location}: reading this protocol needs a package that is missing ({exc})"
        ) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{location}: could not open ({exc})") from None


def read_json(location: str | Path) -> Any:
    with open_stream(location) as stream:
        return json.loads(stream.read())


# ---- Sample <-> record ------------------------------------------------------------------------------------


def _scene_meta(scene: Any) -> dict[str, Any]:
    dates = [None if np.isnat(d) else str(d.astype("datetime64[D]")) for d in scene["time"].values]
    return {
        "sensor": scene.attrs["sensor"],
        "bands": [str(b) for b in scene["band"].values],
        "dates": dates,
        "crs": scene.attrs["crs"],
        "transform": list(scene.attrs["transform"])[:6],
        "dtype": scene.attrs.get("dtype"),
        "sources": [str(s) for s in scene.attrs.get("sources", [])],
    }


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, np.ascontiguousarray(array), allow_pickle=False)
    return out.getvalue()


def encode(sample: Sample) -> dict[str, Any]:
    """A sample as a WebDataset record: `__key__`, `json` and one `.npy` per array."""
    if "." in sample.name:
        raise ValueError(f"sample name {sample.name!r} must not contain dots (WebDataset keys)")
    meta = {
        "scenes": {key: _scene_meta(scene) for key, scene in sample.scenes()},
        "classes": list(sample.classes),
        "split": sample.split,
        "labels": list(sample.labels),
        "captions": list(sample.captions),
        "statistics": {k: [list(m), list(s)] for k, (m, s) in sample.statistics.items()},
        "origin": list(sample.origin),
    }
    record: dict[str, Any] = {"__key__": sample.name, "json": json.dumps(meta).encode()}
    for key, scene in sample.scenes():
        record[f"{key}.npy"] = _npy(scene.values.astype(np.float32, copy=False))
    if sample.mask is not None:
        record["mask.npy"] = _npy(sample.mask.astype(np.int64, copy=False))
    return record


def _scene(data: np.ndarray, info: dict[str, Any]) -> Any:
    sensor = get_sensor(info["sensor"])
    crs = CRS.from_wkt(info["crs"]) if info["crs"] else None
    grid = Grid(crs, Affine(*info["transform"]), data.shape[-1], data.shape[-2])
    dates = [None if d is None else np.datetime64(d, "D") for d in info["dates"]]
    scene = to_scene(data, sensor, [sensor.band(b) for b in info["bands"]], grid, dates)
    scene.attrs.update(dtype=info["dtype"] or str(data.dtype), sources=list(info["sources"]))
    return scene


def decode(record: dict[str, Any]) -> Sample:
    """A WebDataset record (`__key__`, `json`, `<array>.npy` bytes) as the sample it was made from."""
    meta = json.loads(record["json"])
    arrays = {
        name.removesuffix(".npy"): np.load(io.BytesIO(data), allow_pickle=False)
        for name, data in record.items()
        if name.endswith(".npy")
    }
    scenes = {key: _scene(arrays[key], info) for key, info in meta["scenes"].items()}
    return Sample(
        name=record["__key__"],
        scene=scenes.pop(SCENE),
        mask=arrays.get("mask"),
        classes=tuple(meta["classes"]),
        split=meta["split"],
        partners=scenes,
        labels=tuple(meta["labels"]),
        captions=tuple(meta["captions"]),
        statistics={k: (tuple(m), tuple(s)) for k, (m, s) in meta["statistics"].items()},
        origin=tuple(meta["origin"]),
    )


def shard_bytes(samples: list[Sample]) -> bytes:
    """One reproducible shard tar (fixed member times) holding `samples` in order."""
    buffer = io.BytesIO()
    with TarWriter(buffer, encoder=False, mtime=0) as writer:
        for sample in samples:
            writer.write(encode(sample))
    return buffer.getvalue()


def iter_shard(
    location: str | Path, keep: Callable[[int], bool] | None = None
) -> Iterator[tuple[int, Sample]]:
    """(position in the shard, sample) of one shard, in order, streamed member by member.

    `keep(position)` chooses which samples to decode; the members of the others are passed over without
    being decoded, so a worker that owns a slice of a shard pays only for its slice."""
    state = {"key": None, "index": -1, "wanted": True}

    def select(name: str) -> bool:
        key = name.split(".", 1)[0]
        if key != state["key"]:
            state["key"], state["index"] = key, state["index"] + 1
            state["wanted"] = keep is None or keep(state["index"])
        return state["wanted"]

    record: dict[str, Any] = {}
    position = -1
    try:
        with open_stream(location) as stream:
            for member in tar_file_iterator(stream, select_files=select):
                key, _, suffix = member["fname"].partition(".")
                if record and record["__key__"] != key:
                    yield position, decode(record)
                    record = {}
                if not record:
                    record, position = {"__key__": key}, state["index"]
                record[suffix] = member["data"]
    except (tarfile.TarError, OSError, EOFError, ValueError, KeyError) as exc:
        raise InputError(
            f"{location}: shard is truncated or corrupt ({exc}); re-run `rsneo prepare`"
        ) from None
    if record:
        yield position, decode(record)
