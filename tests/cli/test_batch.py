"""Many inputs in one command (rsneo.cli.batch through `rsneo segment/change/ask`): one subfolder per input, a
summary table, a bad input reported and skipped with exit 2 at the end, each input resuming on its own; and
the --json documents, validated against their schema (rsneo.cli.documents)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from rsneo.cli import run_app
from rsneo.cli.documents import AskDocument, ChangeDocument, SegmentDocument
from rsneo.version import __version__

S2 = ("sen1floods11", "S2", "Spain_7370579_S2Hand.tif")
SMALL = ["--window", "64", "--overlap", "16", "--batch", "4"]


def crop(source: Path, target: Path, col: int, row: int, size: int = 96) -> Path:
    """A `size`-pixel square of a real raster, georeferenced, as its own GeoTIFF."""
    with rasterio.open(source) as src:
        window = rasterio.windows.Window(col, row, size, size)
        profile = {**src.profile, "width": size, "height": size, "transform": src.window_transform(window)}
        target.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(target, "w", **profile) as dst:
            dst.write(src.read(window=window))
            dst.descriptions = src.descriptions
    return target


@pytest.fixture(scope="module")
def scenes(shared_data, tmp_path_factory) -> Path:
    """A folder of two real Sentinel-2 crops and one truncated file."""
    folder = tmp_path_factory.mktemp("scenes")
    crop(shared_data.joinpath(*S2), folder / "north.tif", 0, 0)
    crop(shared_data.joinpath(*S2), folder / "south.tif", 200, 300)
    data = (folder / "north.tif").read_bytes()
    (folder / "broken.tif").write_bytes(data[: len(data) // 2])
    return folder


@pytest.fixture(scope="module")
def segmented_folder(scenes, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("many") / "out"
    argv = ["segment", str(scenes), "--classes", "water,land", "--out", str(out), "--json",
            "--model", str(tiny_model_dir), *SMALL]  # fmt: skip
    return argv, out


def test_a_folder_segments_each_raster_into_its_subfolder_and_skips_the_bad_one(
    segmented_folder, scenes, capsys
):
    argv, out = segmented_folder
    code = run_app(argv)
    captured = capsys.readouterr()
    assert code == 2  # one input failed: reported, skipped, exit 2 at the end
    document = SegmentDocument.model_validate_json(captured.out)  # stdout is the JSON document alone
    assert document.rsneo == __version__ and not document.ok
    assert [i.name for i in document.items] == ["north", "south"]
    assert [f.input for f in document.failed] == [str(scenes / "broken.tif")]
    assert "truncated" in document.failed[0].error or "corrupt" in document.failed[0].error
    err = " ".join(captured.err.split())
    assert f"1 of 3 inputs failed and were skipped: {scenes / 'broken.tif'}" in err
    assert not (out / "broken").exists()  # nothing left for the bad input
    for item in document.items:
        assert Path(item.files.class_map).parent == out / item.name
        with rasterio.open(item.files.class_map) as src, rasterio.open(scenes / f"{item.name}.tif") as ref:
            assert src.transform == ref.transform and src.shape == ref.shape
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["north", "south"]
    for row, item in zip(rows, document.items, strict=True):
        assert float(row["water_ha"]) == pytest.approx(item.areas["water"], abs=1e-4)  # 4 decimals in CSV
        assert float(row["land_ha"]) == pytest.approx(item.areas["land"], abs=1e-4)
    assert document.summary == str(out / "summary.csv")


def test_each_input_resumes_on_its_own(segmented_folder, scenes, capsys):
    """A second run over the same folder finds each finished map and ends with the same maps."""
    argv, out = segmented_folder
    if not (out / "north").exists():
        run_app(argv)
    before = {n: (out / n / f"{n}_classes.tif").read_bytes() for n in ("north", "south")}
    (out / "south" / "south_classes.gpkg").unlink()  # as if killed after the map of south
    assert run_app(argv) == 2
    capsys.readouterr()
    for name, data in before.items():
        with rasterio.open(out / name / f"{name}_classes.tif") as src:
            again = src.read(1)
        with rasterio.MemoryFile(data) as memory, memory.open() as src:
            np.testing.assert_array_equal(again, src.read(1))  # class indices: exact
    assert (out / "south" / "south_classes.gpkg").is_file()


def test_a_glob_and_several_files_are_inputs_too(scenes, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["segment", str(scenes / "[ns]*.tif"), "--classes", "water", "--out", str(out), "--json",
            "--model", str(tiny_model_dir), *SMALL]  # fmt: skip
    assert run_app(argv) == 0
    document = SegmentDocument.model_validate_json(capsys.readouterr().out)
    assert document.ok and [i.name for i in document.items] == ["north", "south"]


def test_change_pairs_two_folders_by_file_name(shared_data, tiny_model_dir, tmp_path, capsys):
    """LEVIR-CD's A/ and B/ folders: each pair in its own subfolder; --of buildings."""
    levir = shared_data / "levir_cd"
    names = sorted(p.name for p in (levir / "A").glob("*.png"))[:2]
    for side in ("A", "B"):
        (tmp_path / side).mkdir()
        for name in names:  # the top-left 128 x 128 pixels (64 m a side) keep the run short
            Image.open(levir / side / name).crop((0, 0, 128, 128)).save(tmp_path / side / name)
    out = tmp_path / "out"
    argv = ["change", str(tmp_path / "A"), str(tmp_path / "B"), "--of", "buildings", "--pixel-size", "0.5",
            "--out", str(out), "--json", "--model", str(tiny_model_dir), *SMALL]  # fmt: skip
    assert run_app(argv) == 0
    captured = capsys.readouterr()
    document = ChangeDocument.model_validate_json(captured.out)
    assert document.kind == "buildings" and document.ok
    assert [i.name for i in document.items] == [Path(n).stem for n in names]
    for item in document.items:
        assert item.inputs == [str(tmp_path / side / f"{item.name}.png") for side in ("A", "B")]
        assert item.area_unit == "px" and 0 <= item.changed_area <= item.compared_area == 128 * 128
        assert item.changed_percent == pytest.approx(100 * item.changed_area / item.compared_area)
        assert sum(item.classes.values()) == item.changed_area  # the from-to table: integer pixel counts
        assert Path(item.files.report).is_file()
    assert "warning:" in captured.err and document.warnings  # pixel units: on stderr and in the document


def test_ask_each_answers_every_raster_on_its_own(scenes, tiny_model_dir, tmp_path, capsys):
    summary = tmp_path / "answers.csv"
    argv = ["ask", str(scenes / "north.tif"), str(scenes / "south.tif"), "How much of the image is water?",
            "--each", "--summary", str(summary), "--json", "--model", str(tiny_model_dir)]  # fmt: skip
    assert run_app(argv) == 0
    document = AskDocument.model_validate_json(capsys.readouterr().out)
    assert [i.name for i in document.items] == ["north", "south"]
    assert all(i.kind and i.answer for i in document.items)
    with open(summary, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["answer"] for r in rows] == [i.answer for i in document.items]


def test_one_bad_input_alone_is_the_usual_single_error(tmp_path, tiny_model_dir, capsys):
    missing = tmp_path / "nothing.tif"
    argv = ["segment", str(missing), "--classes", "water", "--out", str(tmp_path / "out"), "--json"]
    assert run_app(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and f"error: {missing}: file not found" in " ".join(captured.err.split())
    assert not (tmp_path / "out").exists()


def test_the_json_document_of_one_input_lists_its_files_and_totals(scenes, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["segment", str(scenes / "north.tif"), "--classes", "water, land", "--out", str(out), "--json",
            "--model", str(tiny_model_dir), *SMALL]  # fmt: skip
    assert run_app(argv) == 0
    raw = json.loads(capsys.readouterr().out)
    document = SegmentDocument.model_validate(raw)
    (item,) = document.items
    assert document.ok and document.summary is None and item.out == str(out)
    assert set(item.areas) == {"water", "land", "none of these"} and item.area_unit == "ha"
    assert all(Path(p).is_file() for p in (item.files.class_map, item.files.polygons, item.files.project))
    assert item.files.remote_input is None
