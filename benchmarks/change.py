"""Change detection F1 of `rsneo change` against change-vector analysis + Otsu and the everything-changed map.

Test data only (never trained on, never shipped): the 8 LEVIR-CD building-change crops in
../shared/data/levir_cd (RGB, 256 x 256 PNG, 0.5 m; every pixel labelled: 255 building change, 0 the rest) and
the Taizhou Landsat-7 pair (400 x 400, 6 bands, 30 m; sparse reference: change.bmp / unchanged.bmp). Each pair
goes through `rsneo change`'s own code path (`detect_change`, the whole command: change map, polygons, QGIS
project, report); F1 of the "change" class is computed over the labelled pixels. Wall and CPU seconds of each
`detect_change` call are printed beside (the model is loaded once, before the clock). `--speed` also runs the
800 x 800 Landsat pair (Taizhou mirrored 2 x 2, the reference mirrored with it) and times the whole command in
a fresh process (start-up, imports, model loading) on a 256 x 256 pair and on the 800 x 800 pair.
`--threads N` (default 1) is the intra-op thread count of both (torch's in this process, `rsneo change
--threads` in the fresh ones); the 1-minute load average is printed before and after the timings.

Usage: python benchmarks/change.py [--model DIR] [--data ../shared/data] [--speed [--repeat 3]]
       [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio

from rsneo import baselines

LEVIR_PIXEL_M = 0.5  # LEVIR-CD's ground sampling distance (the PNG crops carry no georeference)
TAIZHOU_BANDS = ("B1", "B2", "B3", "B4", "B5", "B7")  # the ENVI header names them; GeoTIFF copies do not
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _read(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return src.read()


def pairs(data: Path) -> list[tuple[str, list[Path], np.ndarray, np.ndarray]]:
    """(name, [before, after], changed (H, W) bool, unchanged (H, W) bool) for every test pair."""
    out = []
    levir = data / "levir_cd"
    for label in sorted((levir / "label").glob("*.png")):
        truth = _read(label)[0] > 0
        out.append(
            (f"levir {label.stem}", [levir / "A" / label.name, levir / "B" / label.name], truth, ~truth)
        )
    taizhou = data / "landsat_change_taizhou"
    out.append(
        (
            "taizhou landsat-7",
            [taizhou / "2000TM", taizhou / "2003TM"],
            _read(taizhou / "change.bmp")[0] > 0,
            _read(taizhou / "unchanged.bmp")[0] > 0,
        )
    )
    return out


def mirrored_pair(rasters: list[Path], changed: np.ndarray, unchanged: np.ndarray, workdir: Path):
    """Each raster and the reference mirrored 2 x 2 (an 800 x 800 pair from the 400 x 400 Taizhou pair)."""

    def tile(a: np.ndarray) -> np.ndarray:
        top = np.concatenate([a, a[..., ::-1]], axis=-1)
        return np.concatenate([top, top[..., ::-1, :]], axis=-2)

    out = []
    for i, path in enumerate(rasters):
        with rasterio.open(path) as src:
            data = tile(src.read())
            profile = {
                "driver": "GTiff", "dtype": data.dtype, "count": data.shape[0], "width": data.shape[2],
                "height": data.shape[1], "crs": src.crs, "transform": src.transform,
            }  # fmt: skip
            descriptions, tags = src.descriptions, src.tags()
        dst_path = workdir / f"mirrored_{i}_{path.name}.tif"
        with rasterio.open(dst_path, "w", **profile) as dst:
            dst.write(data)
            dst.update_tags(**tags)
            for b, name in enumerate(descriptions, start=1):
                if name:
                    dst.set_band_description(b, name)
        out.append(dst_path)
    return out, tile(changed), tile(unchanged)


def score_rsneo(
    system,
    rasters: list[Path],
    workdir: Path,
    changed,
    unchanged,
    mirrored: bool = False,
    buildings_pixel_m: float | None = None,
) -> tuple[dict, float, float]:
    """(scores, wall s, CPU s) of `rsneo change` on one pair; with `buildings_pixel_m`, of `rsneo change --of
    buildings --pixel-size M`."""
    from rsneo.predict.buildings import map_new_buildings
    from rsneo.predict.change import detect_change
    from rsneo.predict.requests import BuildingsRequest, ChangeRequest

    reading = {"sensor": "landsat7_etm", "bands": list(TAIZHOU_BANDS)} if mirrored else {}
    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if buildings_pixel_m is not None:
            request = BuildingsRequest(rasters, workdir, buildings_pixel_m, **reading)
            outputs = map_new_buildings(system, request)
        else:
            outputs = detect_change(system, ChangeRequest(rasters, workdir, **reading))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    predicted = _read(outputs.cog)[0] == 1  # 0 no change, 1 change, 255 no data
    return baselines.binary_scores(predicted, changed, unchanged), wall, cpu


def time_command(
    rasters: list[Path], workdir: Path, mirrored: bool = False, threads: int = 1
) -> tuple[float, float, float]:
    """(wall s, CPU s, peak MB) of the whole `rsneo change` command in a fresh process: start-up, imports and
    model loading included, as a user runs it. The process runs in the temp folder, so it uses the `rsneo`
    this script imported (PYTHONPATH or the environment), not a checkout in the current folder."""
    import resource
    import subprocess
    import sys

    options = ["--sensor", "landsat7_etm", "--bands", ",".join(TAIZHOU_BANDS)] if mirrored else []
    code = "import sys; from rsneo.cli import main; sys.argv[0] = 'rsneo'; main()"
    argv = [sys.executable, "-c", code, "change", *map(str, rasters), "--out", str(workdir), *options]
    argv += ["--threads", str(threads)]
    env = {k: v for k, v in os.environ.items() if k not in ("RSNEO_THREADS", "OMP_NUM_THREADS")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    subprocess.run(
        argv, check=True, capture_output=True, cwd=tempfile.gettempdir(), env=env
    )  # fmt: skip
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, after.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: bundled)")
    parser.add_argument(
        "--data", type=Path, default=DATA, help="folder with levir_cd and landsat_change_taizhou"
    )
    parser.add_argument("--baselines-only", action="store_true", help="skip the model")
    parser.add_argument("--speed", action="store_true", help="also time the 800 x 800 mirrored Landsat pair")
    parser.add_argument(
        "--repeat", type=int, default=1, help="--speed: run each whole command this many times (median)"
    )
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of every timed run")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    args = parser.parse_args()
    system = None
    if not args.baselines_only:
        from rsneo.heads.system import load_system
        from rsneo.model.threads import use_threads

        system = load_system(args.model)
        use_threads(args.threads)
    load = [os.getloadavg()[0]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = pairs(args.data)
        if args.speed:
            name, rasters, changed, unchanged = cases[-1]
            cases.append(("taizhou mirrored 800^2", *mirrored_pair(rasters, changed, unchanged, Path(tmp))))
        for i, (name, rasters, changed, unchanged) in enumerate(cases):
            before, after = _read(rasters[0]), _read(rasters[1])
            row = {
                "pair": name,
                "cva_otsu": baselines.binary_scores(baselines.cva_otsu(before, after), changed, unchanged)[
                    "f1"
                ],
                "all_changed": baselines.binary_scores(np.ones_like(changed), changed, unchanged)["f1"],
            }
            if system is not None:
                scores, wall, cpu = score_rsneo(
                    system, rasters, Path(tmp) / f"pair{i}", changed, unchanged, "mirrored" in name
                )
                row |= {"rsneo": scores["f1"], "wall_s": wall, "cpu_s": cpu}
                if name.startswith("levir"):  # the change LEVIR-CD labels: `rsneo change --of buildings`
                    scores, _, _ = score_rsneo(
                        system, rasters, Path(tmp) / f"buildings{i}", changed, unchanged,
                        buildings_pixel_m=LEVIR_PIXEL_M,
                    )  # fmt: skip
                    row |= {"buildings": scores["f1"], "buildings_share": scores["predicted_share"]}
                row["truth_share"] = float(changed.sum() / max(changed.sum() + unchanged.sum(), 1))
            rows.append(row)
            print(_format(row), flush=True)
        commands = []
        if args.speed:  # the whole command, start-up included, on a 256^2 pair and the 800^2 pair
            for name, rasters, *_ in (cases[0], cases[-1]):
                runs = [
                    time_command(
                        rasters, Path(tmp) / f"command{len(commands)}_{i}", "mirrored" in name, args.threads
                    )
                    for i in range(args.repeat)
                ]
                wall, cpu, peak = (float(np.median(values)) for values in zip(*runs, strict=True))
                commands.append(
                    {"pair": name, "wall_s": wall, "cpu_s": cpu, "peak_mb": peak, "runs": len(runs)}
                )
    load.append(os.getloadavg()[0])
    print(
        f"model: {'none' if system is None else (args.model or 'bundled')}; {args.threads} thread(s); "
        f"load average {load[0]:.1f} before, {load[1]:.1f} after"
    )
    columns = ("buildings", "rsneo", "CVA+Otsu", "all", "wall s", "CPU s")
    header = f"{'pair':32s} " + " ".join(f"{c:>{max(7, len(c))}s}" for c in columns)
    print("F1 of the change class over the labelled pixels (rsneo: `rsneo change`; buildings: the same with")
    print(f"--of buildings --pixel-size {LEVIR_PIXEL_M}, the change LEVIR-CD labels)")
    print(header)
    for row in rows:
        print(_format(row))
    levir = [r for r in rows if r["pair"].startswith("levir")]
    if system is not None and levir:
        scored = [r for r in rows if "mirrored" not in r["pair"] and r["truth_share"] > 0]
        wins = sum(_answer(r) > max(r["cva_otsu"], r["all_changed"]) for r in scored)
        print(
            "levir mean F1: "
            + ", ".join(f"{k} {np.mean([r[k] for r in levir]):.3f}" for k in ("buildings", "rsneo"))
            + f", CVA+Otsu {np.mean([r['cva_otsu'] for r in levir]):.3f}"
            + f", all changed {np.mean([r['all_changed'] for r in levir]):.3f}; rsneo (--of buildings on "
            f"LEVIR-CD) beats both on {wins} of the {len(scored)} pairs with change"
        )
        for r in rows:
            if r["truth_share"] == 0 and "buildings_share" in r:
                share = r["buildings_share"]
                print(f"{r['pair']}: no change in the reference; --of buildings marks {share:.1%} of it")
    if commands:
        print(
            "the whole `rsneo change` command in a fresh process (start-up and model loading included), "
            f"median of {args.repeat}:"
        )
        for c in commands:
            print(
                f"  {c['pair']:32s} wall {c['wall_s']:6.1f} s  CPU {c['cpu_s']:6.1f} s  "
                f"peak {c['peak_mb']:5.0f} MB"
            )
    if args.json:
        document = {"threads": args.threads, "load": load, "pairs": rows, "commands": commands}
        args.json.write_text(json.dumps(document, indent=1))


def _answer(row: dict) -> float:
    """The F1 of the command a user asks this pair's question with: buildings on LEVIR-CD, else any change."""
    return row.get("buildings", row.get("rsneo", float("nan")))


def _format(row: dict) -> str:
    model = f"{row['rsneo']:7.3f}" if "rsneo" in row else f"{'-':>7s}"
    buildings = f"{row['buildings']:9.3f}" if "buildings" in row else f"{'-':>9s}"
    times = f"{row['wall_s']:7.1f} {row['cpu_s']:7.1f}" if "wall_s" in row else ""
    return f"{row['pair']:32s} {buildings} {model} {row['cva_otsu']:9.3f} {row['all_changed']:7.3f} {times}"


if __name__ == "__main__":
    main()
