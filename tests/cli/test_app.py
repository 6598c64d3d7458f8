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


MISSPELT = [
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
]


@pytest.mark.parametrize(("argv", "expected"), MISSPELT)
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


REFUSED = (
    [(c, _huge_vrt, TOO_BIG) for c in ("info", "segment", "change", "ask")]
    + [(c, _all_nodata, NO_VALID) for c in ("segment", "change", "ask")]
    + [(c, _all_nan, ALL_NAN) for c in ("segment", "change", "ask")]
)


@pytest.mark.parametrize(("command", "make", "expected"), REFUSED)
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


GPU_COMMANDS = ["segment", "change", "ask"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("command", GPU_COMMANDS)
def test_a_gpu_this_machine_lacks_is_a_user_error(command, shared_data, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run([*_argv(command, shared_data / S2HAND, out), "--device", "cuda"], capsys)
    assert code == 2 and "error: --device cuda: this machine has no CUDA GPU" in err, err
    assert "expected one of ['cpu']" in err and not out.exists()


NOT_PLAIN_YAML = [
    ('steps: !!python/object/apply:os.system ["touch {marker}"]\n', "could not determine a constructor"),
    ("steps: [unclosed\n", "while parsing a flow sequence"),
]


@pytest.mark.parametrize(("text", "expected"), NOT_PLAIN_YAML)
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


# ---- issue #22: every user-caused condition one message, exit 2 ------------------------------------------


def _broken_model(tiny: Path, folder: Path, how: str) -> Path:
    """A copy of the tiny model folder with its index or config.json broken as a user's download may be."""
    import json

    model = folder / f"model_{how}"
    shutil.copytree(tiny, model)
    index = model / "model.safetensors.index.json"
    if how == "index":
        index.write_text("not json")
    elif how == "outside":  # the tensors exist, but beside the folder: never loaded from there
        from safetensors import safe_open

        weights = model / "model.safetensors"
        with safe_open(str(weights), framework="pt") as f:
            names = list(f.keys())
        shutil.move(weights, folder / "elsewhere.safetensors")
        index.write_text(json.dumps({"weight_map": {k: "../elsewhere.safetensors" for k in names}}))
    else:
        config = json.loads((model / "config.json").read_text())
        (model / "config.json").write_text(json.dumps(config | {"num_layers": "six"}))
    return model


def _empty_labels(folder: Path) -> Path:
    import geopandas as gpd

    path = folder / "labels.gpkg"
    gpd.GeoDataFrame({"cover": []}, geometry=[], crs="EPSG:4326").to_file(path)
    return path


NEVER = "never_loaded_model"  # a --model that does not exist: the mistake is named before it is opened
PNG = "levir_cd/B/test_7_0256_0512.png"
MANY, FIFTEEN = (",".join(f"c{i}" for i in range(n)) for n in (1000, 15))


def _seg(raster, out, model, *extra) -> list:
    return ["segment", raster, "--classes", "water", "--out", out, "--model", model, *extra]


def _learn(raster, out, model, labels, *extra) -> list:
    return ["learn", raster, "--labels", labels, "--class-field", "cover", "--out", out, "--model", model,
            *extra]  # fmt: skip


# (id, argv from (raster, out, tiny model, tmp folder), expected message)
USER_CONDITIONS = [
    ("1,000 classes", lambda r, o, m, t: ["segment", r, "--classes", MANY, "--out", o, "--model", t / NEVER],
     r"--classes: expected at most 253 class names, got 1,000"),
    ("15 from-to classes",
     lambda r, o, m, t: ["change", r, r, "--classes", FIFTEEN, "--out", o, "--model", t / NEVER],
     r"--classes: expected at most 14 class names, got 15"),
    ("negative --max-side",
     lambda r, o, m, t: ["ask", r, "How much?", "--max-side", "-1", "--model", t / NEVER],
     r"--max-side: expected 0 \(full resolution\) or a number of pixels, got -1"),
    ("bad --min-area", lambda r, o, m, t: _seg(r, o, t / NEVER, "--min-area", "abc"),
     r"--min-area: expected an area in hectares \(0.5\) or pixels with a px suffix \(4px\), got 'abc'"),
    ("bad --min-area in ask",
     lambda r, o, m, t: ["ask", r, "How much?", "--min-area", "5m", "--model", t / NEVER],
     r"--min-area: expected an area in hectares"),
    ("bad --simplify",
     lambda r, o, m, t: ["change", r, r, "--out", o, "--simplify", "ten", "--model", t / NEVER],
     r"--simplify: expected a distance in map units \(20\) or pixels with a px suffix"),
    ("hectares without georeference", lambda r, o, m, t: _seg(t / "photo.png", o, m, "--min-area", "0.5"),
     r"--min-area 0.5 ha: the input has no georeference, so its map has no hectares; give the minimum in "
     r"pixels instead \(e.g. 4px\)"),
    ("empty label file", lambda r, o, m, t: _learn(r, o, m, _empty_labels(t)),
     r"labels.gpkg: no labelled feature \(the file is empty, or none of its features has both a geometry and "
     r"a class in field 'cover'\); expected polygons or points, each with its class"),
    ("one fold", lambda r, o, m, t: _learn(r, o, m, _empty_labels(t), "--folds", "1"),
     r"--folds: expected 0 \(no score\) or at least 2 folds, got 1"),
    ("index not JSON", lambda r, o, m, t: _seg(r, o, _broken_model(m, t, "index")),
     r"model.safetensors.index.json: not a JSON file .*expected a safetensors index"),
    ("shard outside the folder", lambda r, o, m, t: _seg(r, o, _broken_model(m, t, "outside")),
     r"shard '../elsewhere.safetensors' is outside the model folder"),
    ("config value of the wrong type", lambda r, o, m, t: _seg(r, o, _broken_model(m, t, "config")),
     r"config.json: config: 'num_layers' is 'six'; expected an integer"),
    ("disk too small", lambda r, o, m, t: _seg(r, o, t / NEVER),
     r"its outputs need about 1.0 MB in .*out, but .* has 0.3 MB free; expected room for them"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "make", "expected"), USER_CONDITIONS, ids=[c[0] for c in USER_CONDITIONS])
def test_user_caused_conditions_are_one_message_naming_the_option_or_file(
    case, make, expected, shared_data, tiny_model_dir, tmp_path, capsys, monkeypatch
):
    """Issue #22's user-caused conditions (and the new options' mistakes): exit 2, one `error:` line that
    names the option or file and what was expected, no warning printed before it, nothing written."""
    import re

    if case == "disk too small":
        monkeypatch.setattr(
            shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**9, 10**9 - 3 * 10**5, 3 * 10**5)
        )
    shutil.copy(shared_data / PNG, tmp_path / "photo.png")
    out = tmp_path / "out"
    argv = [str(a) for a in make(str(shared_data / S2HAND), str(out), tiny_model_dir, tmp_path)]
    code, err = run(argv, capsys)
    assert code == 2 and re.search(expected, err), err
    before = err.split("error:")[0]
    if case == "hectares without georeference":  # the reader's own note on the PNG is the reason
        before = re.sub(r"warning: \S+photo.png has no georeference: using pixel units \(.*?\)", "", before)
    assert err.count("error:") == 1 and "warning" not in before, err
    assert not out.exists() or not any(out.iterdir())


def test_the_mistake_sweep_reaches_70_cases():
    """Every command-line and input mistake above is one case of the sweep (issue #22 asks for 70 or more)."""
    cases = (
        len(COMMANDS)  # unknown option
        + len(NEEDS_ARGUMENTS)  # missing argument
        + len(MISSPELT)
        + len(SWEEP)  # broken rasters
        + len(REFUSED)  # too large, all nodata, all NaN
        + len(GPU_COMMANDS)
        + len(NOT_PLAIN_YAML)
        + 1  # a full disk mid-run
        + len(USER_CONDITIONS)
    )
    assert cases >= 70, cases
