"""WebDataset shards of Samples: a sample comes back as it went in, and an archive streams over HTTP from a
server on 127.0.0.1 to several ranks and DataLoader workers without duplicates, resuming mid-epoch."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import io
import tarfile
import threading
import warnings
from itertools import islice

import numpy as np
import pytest
from torch.utils.data import DataLoader

from rsneo.data.labelled import change_pairs
from rsneo.data.shard_format import decode, encode, shard_bytes
from rsneo.data.shards import ShardDataset, prepare_shards
from rsneo.errors import InputError


def _whole(item):
    return item


def _same(a, b) -> None:
    assert a.name == b.name and a.classes == b.classes and a.split == b.split and a.origin == b.origin
    assert a.labels == b.labels and a.captions == b.captions and a.statistics == b.statistics
    for (key, x), (other, y) in zip(a.scenes(), b.scenes(), strict=True):
        assert key == other and x.dims == y.dims and x.shape == y.shape
        np.testing.assert_array_equal(np.isnan(x.values), np.isnan(y.values))
        np.testing.assert_allclose(x.values, y.values, rtol=0, atol=0)  # float32 stored as float32
        assert {k: x.attrs[k] for k in ("sensor", "crs", "transform", "dtype")} == {
            k: y.attrs[k] for k in ("sensor", "crs", "transform", "dtype")
        }
        assert list(x["band"].values) == list(y["band"].values)
        np.testing.assert_array_equal(x["time"].values, y["time"].values)
    if a.mask is None:
        assert b.mask is None
    else:
        np.testing.assert_array_equal(a.mask, b.mask)


def test_samples_round_trip_through_a_webdataset_record(flood_tiles, shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pair = change_pairs(shared_data / "levir_cd", "train", pixel_size=0.5)[0]
    for sample in (flood_tiles[9], pair):
        record = encode(sample)
        assert set(record) >= {"__key__", "json", "scene.npy", "mask.npy"}
        _same(sample, decode(record))
    assert "sentinel1.npy" in encode(flood_tiles[9])
    with tarfile.open(fileobj=io.BytesIO(shard_bytes([pair]))) as tar:
        members = tar.getnames()
    assert members == [f"{pair.name}.json", f"{pair.name}.mask.npy", f"{pair.name}.scene.npy"]


@pytest.fixture(scope="module")
def served(flood_tiles, tmp_path_factory):
    """40 real tiles in 3 uneven local shards, and the same folder served over HTTP on 127.0.0.1 by a
    server thread that is shut down when the module's tests end."""
    root = tmp_path_factory.mktemp("served")
    prepare_shards([flood_tiles[:9], flood_tiles[9:30], flood_tiles[30:40]], _whole, root / "shards", 1,
                   progress=False)  # fmt: skip
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield root / "shards", f"http://127.0.0.1:{server.server_address[1]}/shards"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request lines in the test output
        pass


def _names(dataset, workers: int = 0, batch: int | None = None, count: int | None = None) -> list:
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers,
                        collate_fn=(lambda b: [s.name for s in b]) if batch else None)  # fmt: skip
    items = list(islice(loader, count))
    return items if batch else [s.name for s in items]


@pytest.mark.slow
def test_an_archive_streams_over_http_to_ranks_and_workers_as_from_disk(served):
    local, url = served
    on_disk = _names(ShardDataset(local))
    assert _names(ShardDataset(url)) == on_disk and len(on_disk) == 40
    seen = []
    for rank in range(2):  # 2 ranks x 2 DataLoader workers: every sample once
        seen += _names(ShardDataset(url, shuffle=True, seed=3, buffer=4, rank=rank, world=2), workers=2)
    assert sorted(seen) == sorted(on_disk)
    first = next(iter(ShardDataset(url)))
    _same(first, next(iter(ShardDataset(local))))

    def batches(folder, start: int, count: int) -> list:
        dataset = ShardDataset(folder, shuffle=True, seed=5, buffer=3, repeat=True, batch_size=4)
        dataset.start_batch = start
        return _names(dataset, workers=2, batch=4, count=count)

    whole = batches(url, 0, 14)  # 56 samples: into the second pass of 40
    assert batches(url, 9, 5) == whole[9:] and whole == batches(local, 0, 14)


def test_a_missing_remote_shard_folder_is_an_input_error(served):
    _, url = served
    with pytest.raises(InputError, match=r"/nothing/manifest.json: could not open"):
        ShardDataset(url.replace("/shards", "/nothing"))


def test_no_shard_member_is_unpickled(flood_tiles, tmp_path):
    """A record whose array holds Python objects is refused, not executed (allow_pickle=False)."""
    record = encode(flood_tiles[0])
    evil = io.BytesIO()
    np.save(evil, np.array([object()], dtype=object), allow_pickle=True)
    record["mask.npy"] = evil.getvalue()
    with pytest.raises(ValueError, match="allow_pickle"):
        decode(record)


def test_shards_are_reproducible_byte_for_byte(flood_tiles):
    assert shard_bytes(flood_tiles[:3]) == shard_bytes(flood_tiles[:3])


def test_an_s3_archive_without_s3fs_names_what_is_missing():
    if importlib.util.find_spec("s3fs") is not None:
        pytest.skip("s3fs is installed: the s3 path would go to the network")
    with pytest.raises(InputError, match=r"s3://bucket/shards/manifest.json: .*needs a package.*s3fs"):
        ShardDataset("s3://bucket/shards")
