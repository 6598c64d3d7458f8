"""The product commands (rsneo.cli.products): `rsneo segment`, `change`, `ask` end to end on real samples;
bad input leaves nothing behind."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from PIL import Image
from rio_cogeo.cogeo import cog_validate

from rsneo.cli import run_app
from rsneo.predict.requests import AskRequest, SegmentRequest

S2 = ("sen1floods11", "S2", "Spain_7370579_S2Hand.tif")
S1 = ("sen1floods11", "S1", "Spain_7370579_S1Hand.tif")
SMALL = ["--window", "256", "--overlap", "32", "--batch", "2"]


def stderr(capsys) -> str:
    """What the command printed on stderr, with the console's line wrapping undone."""
    return " ".join(capsys.readouterr().err.split())


@pytest.fixture(scope="module")
def segmented(tiny_model_dir, shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("segment") / "out"
    argv = ["segment", str(shared_data.joinpath(*S2)), "--classes", "water, land", "--out", str(out)]
    code = run_app([*argv, "--model", str(tiny_model_dir), *SMALL])
    assert code == 0
    return out


def test_segment_writes_cog_polygons_style_and_project(segmented, shared_data):
    names = sorted(p.name for p in segmented.iterdir())
    stem = "Spain_7370579_S2Hand"
    suffixes = ["_classes.tif", "_classes_confidence.tif", "_classes.gpkg", "_classes.qml", ".qgz"]
    assert names == sorted(stem + suffix for suffix in suffixes)
    cog = segmented / f"{stem}_classes.tif"
    assert cog_validate(str(cog))[0] and cog_validate(str(segmented / f"{stem}_classes_confidence.tif"))[0]
    with rasterio.open(shared_data.joinpath(*S2)) as src, rasterio.open(cog) as out:
        assert out.crs == src.crs and out.transform == src.transform and out.shape == src.shape
        assert out.tags(1)["class_names"] == '["water", "land", "none of these"]'
        values = set(np.unique(out.read(1)).tolist())
    assert values <= {0, 1, 2, 255}
    polygons = gpd.read_file(segmented / f"{stem}_classes.gpkg", layer="classes")
    assert polygons.crs.to_epsg() == 4326 and (polygons.area_ha > 0).all()


@pytest.mark.qgis
def test_segment_project_opens_in_qgis(qgis, segmented):
    seen = qgis.describe(segmented / "Spain_7370579_S2Hand.qgz")
    assert seen["crs"] == "EPSG:4326"
    assert len(seen["layers"]) == 3 and all(layer["valid"] for layer in seen["layers"]), seen
    palette = next(layer for layer in seen["layers"] if layer["renderer"] == "paletted")
    assert [c[1] for c in palette["classes"]] == ["water", "land", "none of these"]
    assert palette["classes"][0][2] == "#1e6edc"  # water blue (rsneo.io.palette)


def test_change_on_the_taizhou_landsat_pair(tiny_model_dir, shared_data, tmp_path):
    folder = shared_data / "landsat_change_taizhou"
    out = tmp_path / "change"
    argv = [
        "change",
        str(folder / "2000TM"),
        str(folder / "2003TM"),
        "--out",
        str(out),
        "--model",
        str(tiny_model_dir),
    ]
    assert run_app([*argv, "--classes", "water,vegetation,built-up", *SMALL]) == 0
    assert {p.name for p in out.iterdir()} == {
        "change.tif", "change_confidence.tif", "change.gpkg", "change.qml", "change.qgz", "change_table.csv",
        "change_report.html",
    }  # fmt: skip
    assert cog_validate(str(out / "change.tif"))[0]
    with rasterio.open(out / "change.tif") as cog, rasterio.open(folder / "2000TM") as src:
        assert cog.crs == src.crs and cog.transform == src.transform
        changed_map = cog.read(1)
        names = json.loads(cog.tags(1)["class_names"])
    assert "water → built-up" in names
    # the untrained change head is a feature distance: it still ranks the reference pixels well
    changed = np.asarray(Image.open(folder / "change.bmp")) > 0
    unchanged = np.asarray(Image.open(folder / "unchanged.bmp")) > 0
    detected = (changed_map > 0) & (changed_map != 255)
    assert (detected[changed].mean() + (~detected[unchanged]).mean()) / 2 > 0.8
    # the table, the report and the map agree: 30 m pixels are 0.09 ha on the map; on the ground UTM's scale
    # (k^2 ~ 1.0014 some 300 km off zone 51's central meridian) makes them 0.1 % smaller
    with (out / "change_table.csv").open() as f:
        rows = list(csv.DictReader(f))
    table_total = sum(float(r["area_ha"]) for r in rows)
    assert table_total == pytest.approx(detected.sum() * 0.09, rel=3e-3)
    assert table_total < detected.sum() * 0.09
    html = (out / "change_report.html").read_text()
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 3
    assert f"Changed area: {table_total:,.2f} ha" in html
    compared = float(re.search(r"Compared area: ([\d,.]+) ha", html).group(1).replace(",", ""))
    assert compared == pytest.approx(14_400, rel=3e-3)  # 400 x 400 pixels of ~0.09 ha
    assert 'id="generated"' in html


def test_change_reprojects_a_date_on_another_grid(tiny_model_dir, shared_data, tmp_path):
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    folder = shared_data / "landsat_change_taizhou"
    moved = tmp_path / "2003TM_wgs84.tif"  # the second date in EPSG:4326, as another provider might ship it
    with rasterio.open(folder / "2003TM") as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:4326", src.width, src.height, *src.bounds
        )
        profile = {**src.profile, "driver": "GTiff", "crs": "EPSG:4326", "transform": transform}
        profile.update(width=width, height=height, nodata=0)
        with rasterio.open(moved, "w", **profile) as dst:
            for band in range(1, src.count + 1):
                reproject(rasterio.band(src, band), rasterio.band(dst, band), resampling=Resampling.bilinear)
    out = tmp_path / "out"
    argv = ["change", str(folder / "2000TM"), str(moved), "--out", str(out), "--model", str(tiny_model_dir)]
    assert run_app([*argv, "--sensor", "landsat7_etm", "--bands", "B1,B2,B3,B4,B5,B7", *SMALL]) == 0
    with rasterio.open(out / "change.tif") as cog, rasterio.open(folder / "2000TM") as before:
        assert (cog.crs, cog.transform, cog.shape) == (before.crs, before.transform, before.shape)
        valid = cog.read(1) != 255
    assert valid.mean() > 0.95  # the reprojected date covers the first one's grid except at its rim


def test_change_over_three_dates_compares_first_and_last(tiny_model_dir, shared_data, tmp_path):
    series = sorted((shared_data / "timeseries" / "landsat_pucallpa").glob("*.tif"))
    dates = [series[0], series[3], series[-1]]  # 1985, 2000, 2020
    out = tmp_path / "series"
    argv = ["change", *map(str, dates), "--out", str(out), "--model", str(tiny_model_dir)]
    assert run_app([*argv, "--sensor", "landsat5_tm", "--bands", "B5,B4,B3,B2", *SMALL]) == 0
    html = (out / "change_report.html").read_text()
    assert "Change between 1985.tif and 2020.tif" in html
    assert "Dates: 1985-01-01, 2000-01-01, 2020-01-01" in html
    with rasterio.open(out / "change.tif") as cog, rasterio.open(dates[0]) as first:
        assert cog.crs == first.crs and cog.shape == first.shape


def test_change_on_png_pairs_uses_pixel_units_with_a_warning(tiny_model_dir, shared_data, tmp_path, capsys):
    levir = shared_data / "levir_cd"
    out = tmp_path / "levir"
    name = "test_2_0000_0000.png"
    argv = ["change", str(levir / "A" / name), str(levir / "B" / name), "--out", str(out)]
    assert run_app([*argv, "--model", str(tiny_model_dir), *SMALL]) == 0
    assert "no georeference" in stderr(capsys)
    with (out / "change_table.csv").open() as f:
        header = next(csv.reader(f))
    assert header[2] == "area_px"
    html = (out / "change_report.html").read_text()
    assert "areas are in pixels" in html and "Compared area: 65,536 pixels" in html


def test_change_of_buildings_on_a_png_pair_needs_and_uses_the_pixel_size(
    tiny_model_dir, shared_data, tmp_path, capsys
):
    """`--of buildings` on a LEVIR-CD pair: without `--pixel-size` a clear error (exit 2, nothing written);
    with it, the new-building map and the share printed from it."""
    levir = shared_data / "levir_cd"
    name = "train_36_0512_0512.png"
    argv = ["change", str(levir / "A" / name), str(levir / "B" / name), "--of", "buildings"]
    out = tmp_path / "buildings"
    assert run_app([*argv, "--out", str(out), "--model", str(tiny_model_dir)]) == 2
    assert "pass --pixel-size METRES" in stderr(capsys)
    assert not list(out.glob("change*"))
    assert run_app([*argv, "--out", str(out), "--pixel-size", "0.5", "--model", str(tiny_model_dir)]) == 0
    printed = capsys.readouterr().out
    with rasterio.open(out / "change.tif") as src:
        new = int((src.read(1) == 1).sum())
    assert f"changed: {new:,} pixels of 65,536 pixels" in printed and 0 < new < 0.5 * 65_536
    with (out / "change_table.csv").open() as f:
        assert [row["from"] for row in csv.DictReader(f)] == ["new building"]


def test_ask_answers_one_question_over_a_time_series(tiny_model_dir, tiny_system, shared_data, capsys):
    from rsneo.predict.ask import ask

    series = sorted((shared_data / "timeseries" / "landsat_pucallpa").glob("*.tif"))[:3]
    argv = ["ask", *map(str, series), "Where was forest cleared?", "--model", str(tiny_model_dir)]
    # --max-tokens is deprecated and ignored, but scripts that still pass it keep working
    options = ["--sensor", "landsat5_tm", "--bands", "B5,B4,B3,B2", "--max-tokens", "5", "--max-side", "128"]
    assert run_app([*argv, *options]) == 0
    bands = ["B5", "B4", "B3", "B2"]
    question = "Where was forest cleared?"
    expected = ask(
        tiny_system,
        AskRequest(rasters=series, question=question, sensor="landsat5_tm", bands=bands, max_side=128),
    ).text
    assert capsys.readouterr().out == expected + "\n"


# ---- bad input: a clear message, exit status 2, nothing left behind ---------------------------------------


def test_empty_class_list(tiny_model_dir, shared_data, tmp_path, capsys):
    out = tmp_path / "out"
    code = run_app(["segment", str(shared_data.joinpath(*S2)), "--classes", " , ", "--out", str(out)])
    assert code == 2
    assert "--classes: expected a comma-separated list of class names" in stderr(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        # whole tokens of the model: known once it has loaded (its config's token_size, 32 here)
        (["--window", "100"], "--window: expected a multiple of the model's token size (32 pixels), got 100"),
        (["--window", "0"], "--window: expected a positive number of pixels, got 0"),
        (["--window", "256", "--overlap", "256"], "--overlap: expected 0 <= overlap < window (256), got 256"),
        (["--overlap", "-1"], "--overlap: expected 0 <= overlap < window (256), got -1"),
        (["--batch", "0"], "--batch: expected at least 1, got 0"),
    ],
)
@pytest.mark.parametrize("command", ["segment", "change"])
def test_window_plans_that_cannot_work_are_refused_naming_the_option(
    command, options, message, tiny_model_dir, shared_data, tmp_path, capsys
):
    out = tmp_path / "out"
    rasters = [str(shared_data.joinpath(*S2))] * (2 if command == "change" else 1)
    argv = [command, *rasters, "--classes", "water,land", "--out", str(out), "--model", str(tiny_model_dir)]
    assert run_app([*argv, *options]) == 2
    assert message in stderr(capsys)
    assert not out.exists()


def test_pair_from_different_sensors(tiny_model_dir, shared_data, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["change", str(shared_data.joinpath(*S1)), str(shared_data.joinpath(*S2)), "--out", str(out)]
    assert run_app([*argv, "--model", str(tiny_model_dir)]) == 2
    err = stderr(capsys)
    assert "sensor sentinel2_l1c" in err and "differs from" in err and "same sensor" in err
    assert not out.exists()


def test_pair_in_other_crs_without_overlap(tiny_model_dir, shared_data, tmp_path, capsys):
    # the same Landsat scene, georeferenced in a UTM zone on the other side of the world
    moved = tmp_path / "moved.tif"
    with rasterio.open(shared_data / "rasters" / "RGB.byte.tif") as src:
        profile = {**src.profile, "crs": "EPSG:32651"}
        with rasterio.open(moved, "w", **profile) as dst:
            dst.write(src.read())
    out = tmp_path / "out"
    out.mkdir()  # an existing folder stays, and stays empty
    argv = ["change", str(shared_data / "rasters" / "RGB.byte.tif"), str(moved), "--out", str(out)]
    assert run_app([*argv, "--model", str(tiny_model_dir)]) == 2
    assert "does not overlap" in stderr(capsys)
    assert list(out.iterdir()) == []


def test_unwritable_output_folder(tiny_model_dir, shared_data, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    argv = ["segment", str(shared_data.joinpath(*S2)), "--classes", "water", "--out", str(blocker / "out")]
    assert run_app([*argv, "--model", str(tiny_model_dir)]) == 2
    assert "expected a folder rsneo can write to" in stderr(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_missing_model_folder(shared_data, tmp_path, capsys):
    argv = ["ask", str(shared_data.joinpath(*S2)), "What is this?", "--model", str(tmp_path / "nope")]
    assert run_app(argv) == 2
    assert "expected a model folder with config.json" in stderr(capsys)


def test_resumed_segment_run_matches_a_fresh_one(tiny_system, shared_data, tmp_path, stop_after_rows):
    from rsneo.predict.segment import segment_raster
    from rsneo.predict.sliding_window import WindowPlan

    raster = tmp_path / "chip.tif"  # the chip's top-left 256 x 256 pixels
    with rasterio.open(shared_data.joinpath(*S2)) as src:
        window = rasterio.windows.Window(0, 0, 256, 256)
        profile = {**src.profile, "width": 256, "height": 256, "transform": src.window_transform(window)}
        with rasterio.open(raster, "w", **profile) as dst:
            dst.write(src.read(window=window))
            dst.descriptions = src.descriptions
    request = SegmentRequest(
        raster=raster, classes=["water", "land"], out=tmp_path / "a", plan=WindowPlan(128, 32, 4)
    )
    with stop_after_rows(2):
        segment_raster(tiny_system, request)
    assert not (tmp_path / "a" / "chip_classes.tif").exists()
    resumed = segment_raster(tiny_system, request)
    fresh = segment_raster(tiny_system, replace(request, out=tmp_path / "b"))
    with rasterio.open(resumed.cog) as a, rasterio.open(fresh.cog) as b:
        np.testing.assert_array_equal(a.read(), b.read())
    assert not any(p.name.startswith(".") for p in (tmp_path / "a").iterdir())


def test_band_groups_option_overrides_the_trained_grouping_with_a_warning(
    tiny_model_dir, shared_data, tmp_path, capsys
):
    argv = [
        "segment",
        str(shared_data.joinpath(*S2)),
        "--classes",
        "water, land",
        "--model",
        str(tiny_model_dir),
    ]
    bad = tmp_path / "bad"
    assert run_app([*argv, "--out", str(bad), "--band-groups", "bands", *SMALL]) == 2
    assert "--band-groups: expected one of ['sensor', 'fold'], got 'bands'" in stderr(capsys)
    assert not bad.exists()
    folded = tmp_path / "folded"
    assert run_app([*argv, "--out", str(folded), "--band-groups", "fold", *SMALL]) == 0
    err = stderr(capsys)
    assert "was trained with --band-groups sensor; using fold as asked" in err
    with rasterio.open(folded / "Spain_7370579_S2Hand_classes.tif") as src:
        assert src.read(1).shape == (512, 512)
    same = tmp_path / "same"  # the model's own grouping, asked for explicitly: no warning
    assert run_app([*argv, "--out", str(same), "--band-groups", "sensor", *SMALL]) == 0
    assert "trained with --band-groups" not in stderr(capsys)


def test_an_rgb_photo_is_warned_about_and_strict_refuses_it(shared_data, tmp_path, capsys):
    """The bundled model's segmentation head saw Sentinel-2 at 10 m only: a 0.5 m RGB photo is named in one
    warning line; --strict refuses it with exit 2 and writes nothing."""
    photo = shared_data / "levir_cd" / "B" / "test_7_0256_0512.png"
    message = (
        f"{photo}: rgb imagery at an unknown pixel size; the segmentation head was trained on sentinel2_l1c "
        "at 10 m only: its map here is unverified"
    )
    out = tmp_path / "warned"
    assert run_app(["segment", str(photo), "--classes", "water, land", "--out", str(out)]) == 0
    assert flat(f"warning: {message}") in flat(stderr(capsys))
    refused = tmp_path / "refused"
    command = ["segment", str(photo), "--classes", "water, land", "--out", str(refused), "--strict"]
    assert run_app(command) == 2
    refusal = f"{message}; --strict refuses input outside the model's training data"
    assert flat(refusal) in flat(stderr(capsys))
    assert not refused.exists()


def flat(text: str) -> str:
    """Text without whitespace: rich wraps long lines wherever the terminal width says."""
    return "".join(text.split())


@pytest.mark.parametrize("command", ["segment", "change", "ask", "evaluate", "learn", "finetune"])
@pytest.mark.parametrize(
    ("option", "env", "message"),
    [
        (["--threads", "0"], None, "--threads 0: expected a whole number of threads, 1 or more"),
        ([], "abc", "RSNEO_THREADS 'abc': expected a whole number of threads, 1 or more"),
    ],
)
def test_a_bad_thread_count_is_refused_before_any_work(
    command, option, env, message, tiny_model_dir, shared_data, tmp_path, capsys, monkeypatch
):
    if env is not None:
        monkeypatch.setenv("RSNEO_THREADS", env)
    raster, out = str(shared_data.joinpath(*S2)), tmp_path / "out"
    levir = str(shared_data / "levir_cd")
    argv = {
        "segment": ["segment", raster, "--classes", "water", "--out", str(out)],
        "change": ["change", raster, raster, "--out", str(out)],
        "ask": ["ask", raster, "how much water is there?"],
        "evaluate": ["evaluate", str(tiny_model_dir), levir, "--out", str(out)],
        "learn": ["learn", raster, "--labels", raster, "--class-field", "c", "--out", str(out)],
        "finetune": ["finetune", "change", levir, "--out", str(out)],
    }[command]
    assert run_app([*argv, *option]) == 2
    assert message in stderr(capsys)
    assert not out.exists()
