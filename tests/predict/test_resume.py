"""A resume never trusts a broken partial: damaged state is discarded with one notice, a second writer on one
output folder is refused, and a run killed (SIGKILL, in a child process) at any stage finishes on the next run
with outputs identical to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil

from rsneo.cli.app import run_app
from rsneo.errors import InputError
from rsneo.io.cog import ClassLegend
from rsneo.io.runstate import LOCK_NAME, ResumeNotice, fingerprint
from rsneo.io.windows import RasterWindows
from rsneo.predict.requests import SegmentRequest
from rsneo.predict.resume import confidence_path, run_signature
from rsneo.predict.sliding_window import MapSpec, WindowPlan, predict_raster

REPO = Path(__file__).resolve().parents[2]
PLAN = WindowPlan(128, 32, 3)  # 791 x 718 pixels: 8 window rows of 3 batches


def brightness(pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """A pointwise 'model': P(bright) = red / 255; (B, 3, S, S) -> (B, 2, S, S)."""
    red = pixels[:, 0] / 255.0
    return np.stack([red, 1.0 - red], axis=1)


def run(raster: Path, out: Path, signature: str = "test", **kwargs) -> Path | None:
    with rasterio.open(raster) as src:
        return predict_raster(
            RasterWindows([src]), MapSpec(brightness, ClassLegend.from_names(["bright", "dark"])), out,
            crs=src.crs, transform=src.transform, plan=PLAN, signature=signature, **kwargs,
        )  # fmt: skip


def read_pair(cog: Path) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(cog) as a, rasterio.open(confidence_path(cog)) as b:
        return a.read(), b.read()


@pytest.fixture(scope="module")
def rgb(shared_data) -> Path:
    return shared_data / "rasters" / "RGB.byte.tif"


@pytest.fixture(scope="module")
def reference(rgb, tmp_path_factory) -> tuple[np.ndarray, np.ndarray]:
    """Class map and confidence of an uninterrupted run."""
    return read_pair(run(rgb, tmp_path_factory.mktemp("reference") / "a.tif"))


def assert_finished_like(reference, cog: Path) -> None:
    classes, conf = read_pair(cog)
    np.testing.assert_array_equal(classes, reference[0])  # integer class maps: exact
    np.testing.assert_array_equal(conf, reference[1])
    assert not [p.name for p in cog.parent.iterdir() if p.name.startswith(".")]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _overwrite_finished_block(path: Path) -> None:
    """A readable partial whose finished rows no longer hold what was recorded."""
    with rasterio.open(path, "r+") as dst:
        dst.write(np.full((1, 10, 10), 1, np.uint8), window=rasterio.windows.Window(40, 40, 10, 10))


def _other_carry_shape(path: Path) -> None:
    np.savez(path.with_suffix(".tmp.npz"), carry=np.zeros((4, 7, 9), np.float32))
    os.replace(path.with_suffix(".tmp.npz"), path)


DAMAGE = {
    "progress garbage": (".a.tif.progress.json", lambda p: p.write_bytes(b"\x00{not json")),
    "progress empty": (".a.tif.progress.json", lambda p: p.write_text("")),
    "progress of another run": (
        ".a.tif.progress.json",
        lambda p: p.write_text(p.read_text().replace('"signature": "', '"signature": "x')),
    ),
    "progress rows out of range": (
        ".a.tif.progress.json",
        lambda p: p.write_text(p.read_text().replace('"rows_done": 2', '"rows_done": 99')),
    ),
    "class partial truncated": (".a.tif.partial.tif", _truncate),
    "class partial random bytes": (".a.tif.partial.tif", lambda p: p.write_bytes(os.urandom(4096))),
    "class partial rewritten": (".a.tif.partial.tif", _overwrite_finished_block),
    "confidence partial missing": (".a_confidence.tif.partial.tif", lambda p: p.unlink()),
    "confidence partial truncated": (".a_confidence.tif.partial.tif", _truncate),
    "carry garbage": (".a.tif.carry2.npz", lambda p: p.write_bytes(b"not an npz archive")),
    "carry truncated": (".a.tif.carry2.npz", _truncate),
    "carry of another shape": (".a.tif.carry2.npz", _other_carry_shape),
    "carry missing": (".a.tif.carry2.npz", lambda p: p.unlink()),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_state_is_discarded_with_one_notice(rgb, reference, tmp_path, damage, stop_after_rows):
    with stop_after_rows(2):
        run(rgb, tmp_path / "a.tif")
    name, spoil = DAMAGE[damage]
    spoil(tmp_path / name)
    with pytest.warns(ResumeNotice) as notices:
        out = run(rgb, tmp_path / "a.tif")
    messages = [str(w.message) for w in notices if w.category is ResumeNotice]
    assert len(messages) == 1 and "a.tif: saved state of an interrupted run" in messages[0]
    assert_finished_like(reference, out)


def test_state_of_an_input_rewritten_since_is_not_resumed(rgb, reference, tmp_path, stop_after_rows):
    """The commands sign their state with the input's fingerprint: a rewritten input starts over."""
    raster = tmp_path / "in.tif"
    raster.write_bytes(rgb.read_bytes())
    with stop_after_rows(2):
        run(raster, tmp_path / "a.tif", signature=run_signature(inputs=fingerprint([raster])))
    time.sleep(0.01)
    raster.write_bytes(rgb.read_bytes())  # same bytes, written again: another modification time
    with pytest.warns(ResumeNotice, match="belongs to another input, option or rsneo version"):
        out = run(raster, tmp_path / "a.tif", signature=run_signature(inputs=fingerprint([raster])))
    assert_finished_like(reference, out)


def _uncompressed(src: Path, dst: Path, flip: bool = False) -> Path:
    with rasterio.open(src) as ds:
        profile = {**ds.profile, "compress": None, "tiled": False}
        data = ds.read()
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data[:, ::-1] if flip else data)
    return dst


def test_an_input_replaced_with_the_same_size_and_mtime_is_not_resumed(rgb, tmp_path, stop_after_rows):
    """`cp -p`, `rsync -t` and `tar` keep size and mtime: the content digest tells the new file apart, so the
    map is the new file's alone, never a mix of two inputs."""
    raster = _uncompressed(rgb, tmp_path / "in.tif")
    other = _uncompressed(rgb, tmp_path / "other.tif", flip=True)
    assert raster.stat().st_size == other.stat().st_size
    (tmp_path / "expected").mkdir()
    expected = read_pair(run(other, tmp_path / "expected" / "a.tif"))
    with stop_after_rows(2):
        run(raster, tmp_path / "a.tif", signature=run_signature(inputs=fingerprint([raster])))
    mtime = raster.stat().st_mtime_ns
    raster.write_bytes(other.read_bytes())
    os.utime(raster, ns=(mtime, mtime))
    with pytest.warns(ResumeNotice, match="belongs to another input, option or rsneo version"):
        out = run(raster, tmp_path / "a.tif", signature=run_signature(inputs=fingerprint([raster])))
    assert_finished_like(expected, out)


def test_truncated_input_leaves_nothing_and_the_next_run_works(rgb, reference, tmp_path):
    broken = tmp_path / "in" / "RGB.byte.tif"
    broken.parent.mkdir()
    rasterio.shutil.copy(rgb, tmp_path / "cog.tif", driver="COG")  # header first, then the tiles
    whole = (tmp_path / "cog.tif").read_bytes()
    broken.write_bytes(whole[: len(whole) * 2 // 3])  # a download cut short: the header opens, tiles are gone
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError, match="RGB.byte.tif: cannot read pixels .* truncated or corrupt"):
        run(broken, out / "a.tif")
    assert list(out.iterdir()) == []  # no .partial.tif, .carry*.npz or .progress.json
    broken.write_bytes(whole)  # the user fetches the file again
    assert_finished_like(reference, run(broken, out / "a.tif"))


def test_two_writers_on_one_out_folder(rgb, reference, shared_data, tiny_model_dir, tmp_path, capsys):
    """While a run writes a folder (held at its first window until the test releases it, so no machine load
    can let it finish first), `rsneo segment --out` on it exits 2 and the first run finishes with its own
    output, unchanged."""
    first = _child(f"""
        from rsneo.io.runstate import output_lock
        RELEASE_DIR = Path({str(tmp_path)!r})
        out = RELEASE_DIR / "a.tif"
        with output_lock(out.parent):
            run(out, model=gated)
        print("done", flush=True)
    """)
    try:
        _wait_for(tmp_path / "waiting", first)
        raster = shared_data / "rasters" / "RGB.byte.tif"
        argv = ["segment", str(raster), "--classes", "water,land", "--out", str(tmp_path)]
        assert run_app([*argv, "--model", str(tiny_model_dir), "--window", "64", "--overlap", "0"]) == 2
        err = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
        assert f"pid {first.pid}" in err and "another rsneo run" in err and "Traceback" not in err
        assert not any(p.name.startswith(("RGB.byte", ".RGB.byte")) for p in tmp_path.iterdir())
        assert (tmp_path / LOCK_NAME).read_text().startswith(f"pid {first.pid} ")  # still the first's
        (tmp_path / "release").touch()
        assert first.stdout.readline().strip() == "done"
        assert first.wait(60) == 0
    finally:
        first.kill()
    assert_finished_like(reference, tmp_path / "a.tif")


STAGES = {
    # the first model call: nothing is finished yet
    "before the windows": "hook_predict(1)",
    # inside the fourth window row (its 11th batch)
    "during the windows": "hook_predict(11)",
    # after every window row, while the final COGs are made: once after the confidence map, once before
    "after the windows, first COG": "hook_finish(1)",
    "after the windows, second COG": "hook_finish(2)",
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_killed_at_any_stage_the_next_run_finishes_identically(rgb, reference, tmp_path, stage):
    child = _child(f"""
        {STAGES[stage]}
        run(Path({str(tmp_path)!r}) / "a.tif")
    """)
    assert child.wait(120) == -signal.SIGKILL
    assert not (tmp_path / "a.tif").exists()  # complete or absent
    assert_finished_like(reference, run(rgb, tmp_path / "a.tif"))


def test_killed_before_the_project_reuses_the_map(tiny_model_dir, tiny_system, rgb, tmp_path):
    """A run killed after its class map (before the .qgz) does not compute the map again."""
    from rsneo.predict.maps import segmentation as segment
    from rsneo.predict.segment import segment_raster

    raster = tmp_path / "crop.tif"  # 192 x 160 pixels of the RGB scene, so the tiny model runs fast
    with rasterio.open(rgb) as src:
        window = rasterio.windows.Window(300, 300, 192, 160)
        profile = {**src.profile, "width": 192, "height": 160, "transform": src.window_transform(window)}
        with rasterio.open(raster, "w", **profile) as dst:
            dst.write(src.read(window=window))
    plan = WindowPlan(64, 16, 4)
    child = _child(f"""
        import rsneo.io.qgis
        from rsneo.heads.system import load_system
        from rsneo.predict.requests import SegmentRequest
        from rsneo.predict.segment import segment_raster
        rsneo.io.qgis.write_qgz = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        system = load_system(Path({str(tiny_model_dir)!r}))
        segment_raster(system, SegmentRequest(raster=Path({str(raster)!r}), classes=["water", "land"],
                       out=Path({str(tmp_path / "a")!r}), plan=WindowPlan(64, 16, 4)))
    """)
    assert child.wait(300) == -signal.SIGKILL
    assert (tmp_path / "a" / "crop_classes.tif").exists() and not (tmp_path / "a" / "crop.qgz").exists()

    calls = []
    original = segment.SegmentationPredictor.__call__

    def counted(self, pixels, valid):
        calls.append(len(pixels))
        return original(self, pixels, valid)

    segment.SegmentationPredictor.__call__ = counted
    try:
        request = SegmentRequest(raster=raster, classes=["water", "land"], out=tmp_path / "a", plan=plan)
        resumed = segment_raster(tiny_system, request)
        assert calls == []  # the map was reused, not recomputed
        fresh = segment_raster(tiny_system, replace(request, out=tmp_path / "b"))
        assert calls  # the fresh run did compute (the counter works)
    finally:
        segment.SegmentationPredictor.__call__ = original
    with rasterio.open(resumed.cog) as a, rasterio.open(fresh.cog) as b:
        np.testing.assert_array_equal(a.read(), b.read())
    for name, area in fresh.areas.items():
        assert resumed.areas[name] == pytest.approx(area, rel=1e-9)
    assert resumed.qgz.exists()
    assert not [p.name for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]


CHILD_PRELUDE = """
import os, signal, sys, time
from pathlib import Path
import numpy as np
import rasterio
import rsneo.io.cog
from rsneo.io.cog import ClassLegend
from rsneo.io.windows import RasterWindows
from rsneo.predict.sliding_window import MapSpec, WindowPlan, predict_raster

RGB = Path({rgb!r})
PLAN = WindowPlan(128, 32, 3)


def brightness(pixels, valid):
    red = pixels[:, 0] / 255.0
    return np.stack([red, 1.0 - red], axis=1)


def gated(pixels, valid):
    # says it is inside the windows, then waits (at most 5 minutes) for a file named `release` in RELEASE_DIR
    (RELEASE_DIR / "waiting").touch()
    deadline = time.monotonic() + 300
    while not (RELEASE_DIR / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return brightness(pixels, valid)


MODEL = brightness


def hook_predict(n):
    global MODEL
    calls = []

    def model(pixels, valid):
        calls.append(1)
        if len(calls) == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return brightness(pixels, valid)

    MODEL = model


def hook_finish(n):
    original = rsneo.io.cog.CogBlockWriter.finish
    calls = []

    def finish(self):
        calls.append(1)
        if len(calls) == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self)

    rsneo.io.cog.CogBlockWriter.finish = finish


def run(out, model=None, **kwargs):
    with rasterio.open(RGB) as src:
        return predict_raster(
            RasterWindows([src]), MapSpec(model or MODEL, ClassLegend.from_names(["bright", "dark"])), out,
            crs=src.crs, transform=src.transform,
            plan=PLAN, signature="test", **kwargs,
        )
"""


def _child(code: str) -> subprocess.Popen:
    """Run `code` (after CHILD_PRELUDE) in a fresh Python that imports this worktree's rsneo."""
    rgb = Path(os.environ.get("RSNEO_SHARED", REPO.parent / "shared")) / "data" / "rasters" / "RGB.byte.tif"
    script = CHILD_PRELUDE.format(rgb=str(rgb)) + textwrap.dedent(code)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO
    )


def _wait_for(path: Path, child: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert child.poll() is None, "the first writer stopped early"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_cli_says_in_one_line_that_damaged_state_was_discarded(tiny_model_dir, rgb, tmp_path, capsys):
    raster = tmp_path / "crop.tif"  # 192 x 160 pixels of the RGB scene
    with rasterio.open(rgb) as src:
        window = rasterio.windows.Window(300, 300, 192, 160)
        profile = {**src.profile, "width": 192, "height": 160, "transform": src.window_transform(window)}
        with rasterio.open(raster, "w", **profile) as dst:
            dst.write(src.read(window=window))
    out = tmp_path / "out"
    argv = [
        "segment",
        str(raster),
        "--classes",
        "water,land",
        "--out",
        str(out),
        "--model",
        str(tiny_model_dir),
    ]
    argv += ["--window", "64", "--overlap", "16", "--batch", "2"]
    child = _child(f"""
        from rsneo.cli import run_app
        from rsneo.predict.maps import segmentation as segment
        original, calls = segment.SegmentationPredictor.__call__, []

        def dying(self, pixels, valid):
            calls.append(1)
            if len(calls) == 6:  # inside the third window row
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, pixels, valid)

        segment.SegmentationPredictor.__call__ = dying
        run_app({argv!r})
    """)
    assert child.wait(300) == -signal.SIGKILL
    carries = list(out.glob(".crop_classes.tif.carry*.npz"))
    assert len(carries) == 1
    carries[0].write_bytes(b"\x00" * 10)
    assert run_app(argv) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "saved state of an interrupted run" in line]
    assert len(lines) == 1 and "has an unreadable carry; discarded it and starting again" in " ".join(
        err.split()
    )
    assert "Traceback" not in err
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
