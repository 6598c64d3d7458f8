"""Start-up time of `rsneo --help`, `rsneo <command> --help`, of `segment` on a small raster and of `change`
on a 256 x 256 pair.

Each measurement is a fresh process (as a user's shell starts it); the median wall and CPU (user + sys of
the child) seconds of `--repeat` runs are printed with the heavy modules the help imported (none should be:
the commands import them in their bodies), and the 1-minute load average before and after.
The `segment` line is the whole run on a 128x128 crop of the bundled Sentinel-2 sample, split into the time to
import the segment stack and the rest (model loading, one window, writing the products).
The `change` lines (`--change`) are the whole `rsneo change` on a 256 x 256 LEVIR-CD RGB pair from
../shared/data (no class names; one thread, OMP_NUM_THREADS=1 as in benchmarks/change.py, which older
checkouts without `--threads` honour too): median wall and CPU (user +
sys) seconds, then one more run with a clock around each module's loading, split by top-level package (CPU and
wall time importing each package's own modules, so torch's share excludes numpy's), and the heavy packages it
did not import.

The processes run in a scratch folder, so they use the `rsneo` that PYTHONPATH (or the environment) gives:
`PYTHONPATH=/path/to/other/checkout` times another version of the code with this script.

Usage: .venv/bin/python benchmarks/startup.py [--repeat 5] [--no-segment] [--change] [--only-change]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = (
    "", "sensors", "info", "segment", "change", "ask", "prepare", "train", "export", "convert", "demo",
)  # fmt: skip
HEAVY = ("torch", "rasterio", "numpy", "lightning", "transformers", "hydra", "geopandas", "pandas")
PROBE = """
import contextlib, io, sys
from rsneo.cli import run_app
with contextlib.redirect_stdout(io.StringIO()):
    run_app(sys.argv[1:] + ["--help"])
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""
SAMPLE = REPO / "rsneo/assets/samples/sen1floods11/S2/Spain_7370579_S2Hand.tif"
LEVIR = Path(os.environ.get("RSNEO_SHARED", REPO.parent / "shared")) / "data" / "levir_cd"
LEVIR_PAIR = "test_102_0512_0000.png"  # 256 x 256 RGB, 0.5 m; the pair benchmarks/change.py --speed times
# packages `rsneo change` should not import without class names (transformers: the tokenizer)
NOT_FOR_CHANGE = ("transformers", "tokenizers", "xarray", "lightning", "sklearn", "matplotlib", "hydra")
SCRATCH = tempfile.gettempdir()  # the processes' working folder, outside any checkout (see the docstring)


ONE_THREAD = os.environ | {"OMP_NUM_THREADS": "1"}


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall s, CPU s = user + sys of the child, last line of its stdout); exit 2 is accepted."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=SCRATCH, check=False, env=env)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 2):
        sys.exit(f"{' '.join(argv)} failed:\n{done.stderr}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return elapsed, cpu, done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def timed_cpu(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall s, CPU s = user + sys of the child, its stderr) of one fresh process that must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=SCRATCH, check=False, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stderr}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, done.stderr


# Runs `rsneo` with a clock around each module's loading (importlib's `_load_unlocked`): CPU and wall seconds
# per top-level package, each module's own time (what it imports is counted to that package instead), and the
# modules loaded, as JSON on stderr. CPU time is the steady figure on a shared machine, where `-X importtime`
# (wall only) charges whichever module was running when the process waited.
IMPORT_PROBE = """
import json, sys, time, _frozen_importlib as bootstrap
totals, stack, original = {}, [], bootstrap._load_unlocked
def load(spec):
    start, start_cpu = time.perf_counter(), time.process_time()
    stack.append([0.0, 0.0])
    try:
        return original(spec)
    finally:
        spent = [time.perf_counter() - start, time.process_time() - start_cpu]
        inner = stack.pop()
        if stack:
            stack[-1] = [a + b for a, b in zip(stack[-1], spent)]
        own = totals.setdefault(spec.name.split('.')[0], [0.0, 0.0])
        own[:] = [o + s - i for o, s, i in zip(own, spent, inner)]
bootstrap._load_unlocked = load
from rsneo.cli import main
sys.argv[0] = 'rsneo'
try:
    main()
finally:
    print('IMPORTS' + json.dumps({'packages': totals, 'modules': sorted(sys.modules)}), file=sys.stderr)
"""


def import_breakdown(log: str) -> tuple[dict[str, list[float]], list[str]]:
    """(package -> [wall s, CPU s] of importing it, modules loaded) from `IMPORT_PROBE`'s stderr."""
    line = next(x for x in log.splitlines() if x.startswith("IMPORTS"))
    found = json.loads(line[len("IMPORTS") :])
    return found["packages"], found["modules"]


def help_times(repeat: int) -> None:
    print(f"{'command':<24} {'wall s':>7} {'max s':>6} {'CPU s':>6}  heavy modules imported")
    for command in COMMANDS:
        argv = [sys.executable, "-c", PROBE.format(heavy=HEAVY), *command.split()]
        runs = [timed(argv, ONE_THREAD) for _ in range(repeat)]
        times, cpus = [r[0] for r in runs], [r[1] for r in runs]
        label = f"rsneo {command} --help".replace("  ", " ")
        print(
            f"{label:<24} {statistics.median(times):>7.2f} {max(times):>6.2f} {statistics.median(cpus):>6.2f}"
            f"  {runs[-1][2] or '-'}"
        )


def segment_time() -> None:
    import rasterio
    from rasterio.windows import Window

    with tempfile.TemporaryDirectory() as tmp:
        crop = Path(tmp) / "S2_MSIL1C_crop.tif"
        with rasterio.open(SAMPLE) as src:
            window = Window(0, 0, 128, 128)
            profile = src.profile | {
                "width": 128, "height": 128, "transform": src.window_transform(window), "tiled": False,
            }  # fmt: skip
            with rasterio.open(crop, "w", **profile) as dst:
                dst.write(src.read(window=window))
                dst.descriptions = src.descriptions
        code = "import rsneo.predict.segment, rsneo.heads.system"
        imports, imports_cpu, _ = timed([sys.executable, "-c", code], ONE_THREAD)
        whole, whole_cpu, _ = timed(
            [sys.executable, "-m", "rsneo.cli", "segment", str(crop), "--classes", "water,land",
             "--out", str(Path(tmp) / "out"), "--window", "128", "--overlap", "0"], ONE_THREAD,
        )  # fmt: skip
    print(
        f"\nrsneo segment, 128x128 raster, one thread: {whole:.2f} s wall, {whole_cpu:.2f} s CPU in all; "
        f"importing its modules {imports:.2f} s wall, {imports_cpu:.2f} s CPU"
    )


def change_time(repeat: int) -> None:
    """The whole `rsneo change` on a 256 x 256 LEVIR-CD pair: median wall and CPU, where the imports go."""
    rasters = [str(LEVIR / date / LEVIR_PAIR) for date in ("A", "B")]
    env = ONE_THREAD
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for i in range(repeat):
            argv = [sys.executable, "-m", "rsneo.cli", "change", *rasters, "--out", f"{tmp}/out{i}"]
            runs.append(timed_cpu(argv, env))
        argv = [sys.executable, "-c", IMPORT_PROBE, "change", *rasters, "--out", f"{tmp}/probe"]
        wall, cpu, log = timed_cpu(argv, env)
    walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
    print(
        f"\nrsneo change, 256x256 RGB pair ({LEVIR_PAIR}): median {statistics.median(walls):.2f} s wall "
        f"(min {min(walls):.2f}), {statistics.median(cpus):.2f} s CPU (min {min(cpus):.2f}), {repeat} runs, "
        "one thread"
    )
    packages, modules = import_breakdown(log)
    imports = [sum(v[i] for v in packages.values()) for i in (0, 1)]
    print(
        f"one more run, imports clocked: {wall:.2f} s wall, {cpu:.2f} s CPU; importing: {imports[0]:.2f} s "
        f"wall, {imports[1]:.2f} s CPU ({imports[1] / cpu:.0%} of the CPU)"
    )
    print(f"  {'package':<20} {'CPU s':>6} {'wall s':>7}")
    for package, (seconds, cpu_s) in sorted(packages.items(), key=lambda kv: -kv[1][1])[:12]:
        print(f"  {package:<20} {cpu_s:6.2f} {seconds:7.2f}")
    loaded = {m.split(".")[0] for m in modules}
    print(
        f"  not imported: {', '.join(m for m in NOT_FOR_CHANGE if m not in loaded) or '-'}; "
        f"imported although not needed: {', '.join(m for m in NOT_FOR_CHANGE if m in loaded) or '-'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-segment", action="store_true")
    parser.add_argument("--change", action="store_true", help="also time `rsneo change` on a 256^2 pair")
    parser.add_argument("--only-change", action="store_true", help="time `rsneo change` alone")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    if not args.only_change:
        help_times(args.repeat)
        if not args.no_segment:
            segment_time()
    if args.change or args.only_change:
        change_time(args.repeat)
    print(f"\nload average: {load:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores: compare CPU s)")


if __name__ == "__main__":
    main()
