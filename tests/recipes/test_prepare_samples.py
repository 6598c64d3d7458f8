"""`data_recipes/prepare_samples.py`, the worked example of `rsneo prepare`: every shared archive becomes a
shard folder whose samples are the archive's own, and a second run keeps every finished shard."""

from __future__ import annotations

import runpy
import sys
import warnings
from pathlib import Path

import pytest

from rsneo.data.shards import ShardDataset, read_manifest

SCRIPT = Path(__file__).resolve().parents[2] / "data_recipes" / "prepare_samples.py"


@pytest.mark.slow
def test_every_shared_archive_prepares_and_a_second_run_keeps_the_shards(shared_data, tmp_path, monkeypatch):
    argv = [str(SCRIPT), "--shared", str(shared_data), "--out", str(tmp_path), "--workers", "1"]
    monkeypatch.setattr(sys, "argv", argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runpy.run_path(str(SCRIPT), run_name="__main__")
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert folders == ["BigEarthNet-S2-Example", "landsat_change_taizhou", "landsat_pucallpa", "levir_cd",
                       "naip_m4709963", "rsicd_mini", "sen1floods11"]  # fmt: skip
    counts = {name: read_manifest(tmp_path / name)["num_samples"] for name in folders}
    assert (
        counts["sen1floods11"] == 4 and counts["levir_cd"] == 8 * 4 and counts["BigEarthNet-S2-Example"] == 6
    )
    taizhou = list(ShardDataset(tmp_path / "landsat_change_taizhou"))
    assert all(s.classes == ("no change", "change") and (s.mask >= 0).any() for s in taizhou)
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/shard-*.tar")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/shard-*.tar")} == stamps  # nothing remade
