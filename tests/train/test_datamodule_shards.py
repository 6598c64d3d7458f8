"""The one path: the same samples give the same training documents read in memory and streamed from shards
(every archive's recipe: Sen1Floods11 with its Sentinel-1 partner and mask, BigEarthNet with labels, the
Pucallpa series, the Taizhou pair, captions, LEVIR-CD change pairs)."""

from __future__ import annotations

import warnings

import pytest
import torch

from rsneo.data.documents import DocumentBuilder
from rsneo.data.recipes import read_archive
from rsneo.data.shards import ShardDataset, prepare_shards
from rsneo.train.corpus import compose
from rsneo.train.datamodule import ShardDocuments

ARCHIVES = [  # (recipe, folder under shared data, options), a few samples of each
    ("sen1floods11", "sen1floods11", {}),
    ("bigearthnet", "bigearthnet", {}),
    (
        "timeseries",
        "timeseries/landsat_pucallpa",
        {"sensor": "landsat5_tm", "bands": ["B5", "B4", "B3", "B2"]},
    ),
    ("taizhou", "landsat_change_taizhou", {}),
    ("captions", "text/rsicd_mini", {}),
    ("change", "levir_cd", {"pixel_size": 0.5}),
]


def _whole(item):
    return item


@pytest.fixture(scope="module")
def archive_samples(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [s for name, folder, options in ARCHIVES
                for s in read_archive(name, shared_data / folder, 64, **options)[:3]]  # fmt: skip


def test_in_memory_and_shard_routes_give_the_same_documents(
    archive_samples, tokenizer, image_tokens, tmp_path
):
    chunks = [archive_samples[i : i + 4] for i in range(0, len(archive_samples), 4)]
    manifest = prepare_shards(chunks, _whole, tmp_path, 1, progress=False)
    sensors = {key.split("/")[0] for key in manifest["statistics"]}  # one entry per band set
    assert {"sentinel2_l1c", "sentinel1_grd", "sentinel2_l2a", "landsat5_tm", "rgb"} <= sensors
    streamed = list(ShardDataset(tmp_path))
    assert [s.name for s in streamed] == [s.name for s in archive_samples] and len(streamed) == 18
    for memory, shard in zip(archive_samples, streamed, strict=True):
        a = compose(memory, DocumentBuilder(tokenizer, image_tokens), 32, change=True)
        b = compose(shard, DocumentBuilder(tokenizer, image_tokens), 32, change=True)
        assert a.document.ids == b.document.ids and a.document.learn == b.document.learn, memory.name
        assert len(a.document.groups) == len(b.document.groups) > 0
        for x, y in zip(a.document.groups, b.document.groups, strict=True):
            assert x.band_keys == y.band_keys and x.time == y.time
            torch.testing.assert_close(x.pixels, y.pixels, rtol=0, atol=1e-6)  # the same float32 arithmetic
        assert (a.chip is None) == (b.chip is None)
        if a.chip is not None:
            assert torch.equal(a.chip.labels, b.chip.labels) and a.chip.class_names == b.chip.class_names
    texts = {s.name: tokenizer.decode(compose(s, DocumentBuilder(tokenizer, image_tokens)).document.ids)
             for s in streamed}  # fmt: skip
    assert "land covers" in texts["Spain_7370579_r0_c0"] or "water covers" in texts["Spain_7370579_r0_c0"]
    assert "Between 2000 and 2003," in next(t for n, t in texts.items() if n.startswith("landsat_change"))
    pair = next(t for n, t in texts.items() if n.startswith("test_"))
    assert "% of the checked pixels changed." in pair  # a labelled change pair speaks of its change


def test_streamed_documents_fold_band_groups_like_in_memory_ones(archive_samples, tokenizer, image_tokens):
    documents = ShardDocuments(tokenizer, image_tokens, "fold", 32)
    folded = documents(archive_samples[0])  # Sentinel-2 (5 groups) + Sentinel-1: one group per frame
    assert len(folded.document.groups) == 1 and folded.document.groups[0].pixels.shape[0] == 15
    assert folded.chip is not None and folded.chip.class_names == ("land", "water")


def test_a_shard_path_may_be_a_url_prefix(tmp_path):
    from rsneo.train.datamodule import shard_location

    assert shard_location("https://example.org/shards") == "https://example.org/shards"
    assert shard_location("s3://bucket/shards") == "s3://bucket/shards"
    assert shard_location(str(tmp_path)) == tmp_path
