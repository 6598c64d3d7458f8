"""`rsneo.cli.app.run_app`: every user mistake on the command line is one message naming the thing, exit 2, no
traceback, nothing left.

Two sweeps: command-line mistakes over every command, broken rasters over every command that reads rasters.
Run against the locked typer (requirements/lock.txt), whose bundled click raises its own exception classes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from rsneo.cli import app, run_app

S2HAND = "sen1floods11/S2/Spain_7370579_S2Hand.tif"
COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands) + ["convert qwen3"]
NEEDS_ARGUMENTS = [c for c in COMMANDS if c not in ("sensors", "demo", "train")]


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = run_app(argv)
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    return code, " ".join(out.err.split())


def test_every_command_is_in_the_sweep():
    assert {"info", "segment", "change", "ask", "prepare", "train", "export", "demo", "sensors"} <= set(
        COMMANDS
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_option(command, capsys):
    code, err = run([*command.split(), "--no-such-option"], capsys)
    if command == "train":  # everything after `train` is a Hydra override
        assert code == 2 and "expected KEY=VALUE overrides, got ['--no-such-option']" in err
        return
    assert code == 2 and "No such option: --no-such-option" in err and f"See 'rsneo {command} --help'" in err


@pytest.mark.parametrize("command", NEEDS_ARGUMENTS)
def test_missing_argument(command, capsys):
    code, err = run(command.split(), capsys)
    if command == "learn":  # the rasters may come from a --config instead, so rsneo checks them itself
        assert code == 2 and "missing RASTER, labels, class_field, out" in err and "--config" in err
        return
    if command == "search":  # a required option, not an argument
        assert code == 2 and "Missing option '--stac'" in err and "See 'rsneo search --help'" in err
        return
    assert code == 2 and "Missing argument" in err and f"See 'rsneo {command} --help'" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["segmnt"], "No such command 'segmnt'. Did you mean 'segment'?"),
        (["convert", "qwen4"], "No such command 'qwen4'. Did you mean 'qwen3'?"),
        (
            ["segment", "x.tif", "--clases", "water", "--out", "o"],
            "No such option: --clases; did you mean --classes",
        ),
        (["sensors", "--jsn"], "No such option: --jsn; did you mean --json?"),
        (["segment", "x.tif", "--out", "o"], "Missing option '--classes'"),
        (
            ["segment", "x.tif", "--classes", "a", "--out", "o", "--window", "abc"],
            "Invalid value for '--window'",
        ),
        (["prepare", "sen1floods11", "src", "out", "--tile", "1.5"], "Invalid value for '--tile'"),
    ],
)
def test_misspelt_missing_and_bad_values(argv, expected, capsys):
    code, err = run(argv, capsys)
    assert code == 2 and expected in err, err


def test_debug_shows_the_traceback(monkeypatch):
    from typer import TyperException

    with pytest.raises(TyperException, match="No such command"):
        run_app(["--debug", "segmnt"])
    monkeypatch.setenv("RSNEO_DEBUG", "1")
    with pytest.raises(TyperException, match="No such command"):
        run_app(["segmnt"])


def _truncated(shared: Path, folder: Path) -> Path:
    path = folder / "S2_MSIL1C_truncated.tif"
    path.write_bytes((shared / S2HAND).read_bytes()[:40_000])
    return path


def _random(shared: Path, folder: Path) -> Path:
    path = folder / "random.tif"
    path.write_bytes(bytes(range(256)) * 400)
    return path


def _empty(shared: Path, folder: Path) -> Path:
    path = folder / "empty.tif"
    path.write_bytes(b"")
    return path


def _header(shared: Path, folder: Path) -> Path:
    for name in ("2000TM", "2000TM.HDR"):
        shutil.copy(shared / "landsat_change_taizhou" / name, folder / name)
    return folder / "2000TM.HDR"


BROKEN = {
    "truncated": (
        _truncated,
        r"truncated.tif: cannot read it as a raster; the file may be truncated or corrupt",
    ),
    "random bytes": (_random, r"random.tif: not a raster format GDAL reads"),
    "zero bytes": (_empty, r"empty.tif: the file is empty \(0 bytes\); expected a raster"),
    "header for data": (
        _header,
        r"2000TM.HDR: is a raster header \(ENVI .hdr\), not the data; give its data file \S*2000TM instead",
    ),
}


def _argv(command: str, raster: Path, out: Path) -> list[str]:
    return {
        "info": ["info", str(raster)],
        "segment": ["segment", str(raster), "--classes", "water,land", "--out", str(out)],
        "change": ["change", str(raster), str(raster), "--out", str(out)],
        "ask": ["ask", str(raster), "What is there?"],
        "prepare": ["prepare", "timeseries", str(raster.parent), str(out), "--sensor", "sentinel2_l1c"],
    }[command]


SWEEP = [
    (command, case)
    for command in ("info", "segment", "change", "ask", "prepare")
    for case in BROKEN
    if not (command == "prepare" and case == "header for data")  # prepare globs rasters; a .hdr is not one
]


@pytest.mark.parametrize(("command", "case"), SWEEP)
def test_broken_raster(command, case, shared_data, tmp_path, capsys):
    import re

    make, expected = BROKEN[case]
    src = tmp_path / "src"
    src.mkdir()
    raster = make(shared_data, src)
    out = tmp_path / "out"
    code, err = run(_argv(command, raster, out), capsys)
    assert code == 2 and re.search(expected, err), err
    assert err.count("error:") == 1
    assert not out.exists()  # nothing half-written


def _huge_vrt(shared: Path, folder: Path) -> Path:
    """A VRT declaring 10^6 x 10^6 pixels over one small real file: a few hundred bytes."""
    import rasterio

    tif = shared / S2HAND
    with rasterio.open(tif) as src:
        crs, t, count = src.crs.to_wkt(), src.transform, src.count
    band = (
        '<VRTRasterBand dataType="UInt16" band="{i}"><SimpleSource><SourceFilename relativeToVRT="0">{tif}'
        '</SourceFilename><SourceBand>{i}</SourceBand><SrcRect xOff="0" yOff="0" xSize="512" ySize="512"/>'
        '<DstRect xOff="0" yOff="0" xSize="512" ySize="512"/></SimpleSource></VRTRasterBand>'
    )
    path = folder / "S2_MSIL1C_huge.vrt"
    path.write_text(
        f'<VRTDataset rasterXSize="1000000" rasterYSize="1000000"><SRS>{crs}</SRS>'
        f"<GeoTransform>{t.c}, {t.a}, 0, {t.f}, 0, {t.e}</GeoTransform>"
        + "".join(band.format(i=i + 1, tif=tif) for i in range(count))
        + "</VRTDataset>"
    )
    return path


def _all_nodata(shared: Path, folder: Path) -> Path:
    import rasterio

    path = folder / "S2_MSIL1C_nodata.tif"
    with rasterio.open(shared / S2HAND) as src:
        profile = src.profile | {"width": 64, "height": 64, "nodata": 0, "tiled": False}
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.zeros((src.count, 64, 64), src.dtypes[0]))
            dst.descriptions = src.descriptions
    return path


def _all_nan(shared: Path, folder: Path) -> Path:
    """A float raster of NaN with no nodata tag: GDAL's mask says every pixel is valid."""
    import rasterio

    path = folder / "S2_MSIL1C_nan.tif"
    with rasterio.open(shared / S2HAND) as src:
        profile = src.profile | {
            "width": 64,
            "height": 64,
            "nodata": None,
            "dtype": "float32",
            "tiled": False,
        }
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.full((src.count, 64, 64), np.nan, np.float32))
            dst.descriptions = src.descriptions
    return path


TOO_BIG = r"S2_MSIL1C_huge.vrt: 1,000,000 x 1,000,000 pixels \(1e\+12\) is more than rsneo processes"
NO_VALID = r"S2_MSIL1C_nodata.tif: every pixel is nodata \(nodata value 0\); expected some valid pixels"
ALL_NAN = r"S2_MSIL1C_nan.tif: every pixel is nodata or NaN/infinite; expected some valid pixels"


@pytest.mark.parametrize(
    ("command", "make", "expected"),
    [(c, _huge_vrt, TOO_BIG) for c in ("info", "segment", "change", "ask")]
    + [(c, _all_nodata, NO_VALID) for c in ("segment", "change", "ask")]
    + [(c, _all_nan, ALL_NAN) for c in ("segment", "change", "ask")],
)
def test_refused_before_work_starts(command, make, expected, shared_data, tmp_path, capsys):
    import re

    raster = make(shared_data, tmp_path)
    out = tmp_path / "out"
    code, err = run(_argv(command, raster, out), capsys)
    assert code == 2 and re.search(expected, err), err
    assert not out.exists()


def _command_that_raises(monkeypatch, exc: BaseException) -> None:
    """Register `rsneo boom` for this test only: a command whose work fails with `exc`."""
    from typer.models import CommandInfo

    def boom() -> None:
        raise exc

    monkeypatch.setattr(
        app, "registered_commands", [*app.registered_commands, CommandInfo("boom", callback=boom)]
    )


def test_an_internal_failure_exits_1_and_says_it_is_a_bug(monkeypatch, capsys):
    _command_that_raises(monkeypatch, ZeroDivisionError("division by zero"))
    assert run(["boom"], capsys) == (
        1,
        "internal error: ZeroDivisionError: division by zero This is a bug in rsneo, not in your input; run "
        "again with --debug for the traceback.",
    )
    with pytest.raises(ZeroDivisionError):  # --debug: the real exception, for a developer
        run_app(["boom", "--debug"])


def test_ctrl_c_exits_130_and_says_interrupted(monkeypatch, capsys):
    """Not 0: a script must not take an interrupted run for a finished one (the locked typer returns the
    status of the Exit(130) it turns Ctrl-C into instead of raising it)."""
    _command_that_raises(monkeypatch, KeyboardInterrupt())
    assert run(["boom"], capsys) == (130, "interrupted")


def test_rsneo_alone_shows_the_help_and_exits_2(capsys):
    code = run_app([])
    out = capsys.readouterr()
    assert code == 2 and "segment" in out.out + out.err and "Traceback" not in out.out + out.err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("command", ["segment", "change", "ask"])
def test_a_gpu_this_machine_lacks_is_a_user_error(command, shared_data, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run([*_argv(command, shared_data / S2HAND, out), "--device", "cuda"], capsys)
    assert code == 2 and "error: --device cuda: this machine has no CUDA GPU" in err, err
    assert "expected one of ['cpu']" in err and not out.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('steps: !!python/object/apply:os.system ["touch {marker}"]\n', "could not determine a constructor"),
        ("steps: [unclosed\n", "while parsing a flow sequence"),
    ],
)
def test_learn_refuses_a_config_that_is_not_plain_yaml_and_runs_nothing(
    text, expected, shared_data, tmp_path, capsys
):
    marker = tmp_path / "ran"
    config = tmp_path / "evil.yaml"
    config.write_text(text.format(marker=marker))
    code, err = run(["learn", str(shared_data / S2HAND), "--config", str(config)], capsys)
    assert code == 2 and f"error: --config {config}: not plain YAML (" in err and expected in err, err
    assert not marker.exists()  # the tag was never constructed


def test_a_full_disk_mid_run_is_a_user_error_and_the_next_run_resumes(
    tiny_model_dir, shared_data, tmp_path, capsys, monkeypatch
):
    """ENOSPC while the map is half written: exit 2, one message that says the partial files are kept, and
    once there is room the same command resumes and ends with the map an uninterrupted run writes."""
    import errno

    import rasterio

    from rsneo.predict import resume

    raster = tmp_path / "crop.tif"  # 192 x 160 pixels of the RGB scene: 3 window rows
    with rasterio.open(shared_data / "rasters" / "RGB.byte.tif") as src:
        window = rasterio.windows.Window(300, 300, 192, 160)
        profile = {**src.profile, "width": 192, "height": 160, "transform": src.window_transform(window)}
        with rasterio.open(raster, "w", **profile) as dst:
            dst.write(src.read(window=window))

    def argv(out: Path) -> list[str]:
        return ["segment", str(raster), "--classes", "water,land", "--out", str(out), "--model",
                str(tiny_model_dir), "--window", "64", "--overlap", "16", "--batch", "2"]  # fmt: skip

    assert run(argv(tmp_path / "reference"), capsys)[0] == 0
    original, calls = resume._save_carry, []

    def full_disk(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(resume, "_save_carry", full_disk)
    out = tmp_path / "out"
    code, err = run(argv(out), capsys)
    assert code == 2 and err.startswith("error: no space left on the device while writing "), err
    assert "segment and change keep their partial files and resume from the last finished row" in err
    assert any(p.name.startswith(".crop_classes.tif") for p in out.iterdir())  # kept for the resume
    monkeypatch.setattr(resume, "_save_carry", original)
    assert run(argv(out), capsys)[0] == 0
    with (
        rasterio.open(out / "crop_classes.tif") as a,
        rasterio.open(tmp_path / "reference" / "crop_classes.tif") as b,
    ):
        np.testing.assert_array_equal(a.read(), b.read())  # integer class maps: exact
