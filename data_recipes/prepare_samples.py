"""Prepare every sample archive in ../shared/data as streaming shards (a worked example of `rsneo prepare`).

Each line below is exactly what a user would type for their own archive of the same layout.

Usage: python data_recipes/prepare_samples.py [--shared ../shared/data] [--out shards] [--workers 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rsneo.cli import run_app

REPO = Path(__file__).resolve().parents[1]

JOBS = [
    ["sen1floods11", "sen1floods11", "--tile", "256"],
    ["bigearthnet", "bigearthnet/BigEarthNet-S2-Example", "--items-per-shard", "2"],
    ["timeseries", "timeseries/naip_m4709963", "--tile", "256"],
    ["timeseries", "timeseries/landsat_pucallpa", "--sensor", "landsat5_tm", "--bands", "B5,B4,B3,B2"],
    ["captions", "text/rsicd_mini", "--tile", "224"],
    ["taizhou", "landsat_change_taizhou", "--tile", "64"],
    # LEVIR-CD is for academic research: shards of it stay on the machine that made them, never shipped
    ["change", "levir_cd", "--tile", "128", "--pixel-size", "0.5"],
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "shards")
    parser.add_argument("--workers", default="2")
    args = parser.parse_args()
    for recipe, source, *options in JOBS:
        out = args.out / Path(source).name
        argv = ["prepare", recipe, str(args.shared / source), str(out), "--workers", args.workers, *options]
        code = run_app(argv)
        if code:
            raise SystemExit(code)


if __name__ == "__main__":
    main()
