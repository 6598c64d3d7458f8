"""The public Python API (rsneo.api): `rsneo.load()` -> segment / change / ask, `rsneo.learn`, `rsneo.fit` and
`rsneo.export`; maps as xarray with class names, confidence and CRS, polygons as a GeoDataFrame; the README's
snippet runs from any folder and the notebooks use nothing but the API."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image

import rsneo
from rsneo.api import ModelSetupWarning, window_plan
from rsneo.errors import InputError

REPO = Path(__file__).resolve().parents[1]
S2 = ("sen1floods11", "S2", "Spain_7370579_S2Hand.tif")
SMALL = dict(window=64, overlap=16, batch=4)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return rsneo.load(tiny_model_dir)


@pytest.fixture(scope="module")
def small_scene(shared_data, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("api") / "scene.tif"
    with rasterio.open(shared_data.joinpath(*S2)) as src:
        window = rasterio.windows.Window(100, 100, 96, 96)
        profile = {**src.profile, "width": 96, "height": 96, "transform": src.window_transform(window)}
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(src.read(window=window))
            dst.descriptions = src.descriptions  # the band names tell the sensor
    return path


def test_the_package_exports_the_api_lazily():
    api = {"load", "learn", "fit", "export", "samples", "true_colour", "class_picture", "Model", "Change"}
    assert api | {"Segmentation", "InputError", "RSNeoWarning"} == set(rsneo.__all__) - {"__version__"}
    assert set(rsneo.__all__) <= set(dir(rsneo))
    assert rsneo.samples().sentinel2.is_file()
    done = subprocess.run(
        [sys.executable, "-c", "import sys, rsneo; print('torch' in sys.modules)"],
        capture_output=True, text=True, cwd=REPO, check=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.stdout.strip() == "False"  # `import rsneo` alone loads no torch
    with pytest.raises(AttributeError, match="no attribute 'segment'"):
        rsneo.segment  # noqa: B018


def test_segment_returns_the_map_with_names_confidence_crs_and_the_polygons(model, small_scene, tmp_path):
    seg = model.segment(small_scene, classes="water, land", out=tmp_path / "out", **SMALL)
    classes = seg.classes
    assert classes.dims == ("y", "x") and classes.shape == (96, 96) and classes.dtype == np.uint8
    assert classes.attrs["class_names"] == ["water", "land", "none of these"]
    with rasterio.open(small_scene) as src, rasterio.open(seg.outputs.cog) as cog:
        assert classes.attrs["crs"] == src.crs.to_wkt()
        assert classes.attrs["transform"] == tuple(src.transform)[:6]
        np.testing.assert_array_equal(classes.values, cog.read(1))  # class indices: exact
        # pixel centres, as read_scene gives them (float64 arithmetic of the same transform)
        np.testing.assert_allclose(classes.x.values[:2], [src.xy(0, c)[0] for c in (0, 1)], rtol=0, atol=1e-9)
    confidence = classes.confidence.values
    assert confidence.shape == (96, 96) and confidence[classes.values != 255].max() <= 100
    counts = {n: int((classes.values == i).sum()) for i, n in enumerate(classes.attrs["class_names"])}
    polygons = seg.polygons
    assert set(polygons["class_name"]) == {n for n, c in counts.items() if c}
    assert polygons.crs.to_epsg() == 4326
    for name, hectares in seg.areas.items():  # the totals are the polygons' areas
        assert polygons.loc[polygons["class_name"] == name, "area_ha"].sum() == pytest.approx(
            hectares, rel=1e-6
        )


def test_change_and_ask_take_paths_and_return_records(model, shared_data, tmp_path):
    pair = [tmp_path / f"{side}.png" for side in ("A", "B")]  # 128 px of a LEVIR-CD pair: a short run
    for side, path in zip(("A", "B"), pair, strict=True):
        Image.open(shared_data / "levir_cd" / side / "test_7_0256_0512.png").crop((0, 0, 128, 128)).save(path)
    with pytest.warns(Warning):  # pixel units, an untrained change head: both said
        change = model.change(*pair, out=tmp_path / "change", of="buildings", pixel_size=0.5, **SMALL)
    assert change.area_unit == "px" and 0 <= change.changed_share <= 1
    assert int((change.classes.values == 1).sum()) == change.changed_area  # pixels: exact
    assert change.outputs.report.is_file() and change.summary
    with pytest.warns(Warning):
        answer = model.ask(pair, "Are there new buildings?", pixel_size=0.5)
    assert answer.kind and answer.text


def test_a_missing_head_or_other_band_groups_is_warned_about(tiny_model_dir, small_scene, tmp_path):
    trained = rsneo.load(tiny_model_dir).system.config.band_groups
    other_groups = "fold" if trained == "sensor" else "sensor"
    with pytest.warns(
        ModelSetupWarning, match=f"was trained with --band-groups {trained}; using {other_groups}"
    ):
        other = rsneo.load(tiny_model_dir, band_groups=other_groups)
    other.system.trained_heads = ()
    with pytest.warns(ModelSetupWarning, match="has no trained segmentation head; using a fresh one"):
        other.segment(small_scene, "water", out=tmp_path, **SMALL)


def test_mistakes_are_input_errors_naming_the_option(model, small_scene, tmp_path):
    with pytest.raises(InputError, match=r"--window: expected a multiple of the model's token size \(32"):
        window_plan(100, 16, 2, 32)
    with pytest.raises(InputError, match="--of: expected buildings"):
        model.change(small_scene, small_scene, out=tmp_path, of="roads")
    with pytest.raises(InputError, match="learn: unknown settings \\['stepz'\\]"):
        rsneo.learn(small_scene, "labels.gpkg", "class", tmp_path / "m", stepz=3)


def test_learn_writes_a_model_folder_that_load_serves(
    water_label_points, shared_data, tiny_model_dir, tmp_path
):
    labels = water_label_points(20, 0, "api_points.gpkg")
    out = tmp_path / "learnt"
    result = rsneo.learn(
        shared_data.joinpath(*S2), labels, "cover", out, model=tiny_model_dir, steps=5, window=128,
        folds=0, features="all",
    )  # fmt: skip
    assert result.out == out and (out / "learn.json").is_file()
    assert set(result.classes) == {"Flood water", "dry ground"}
    assert rsneo.load(out).folder == out


def readme_snippet() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python") :]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_snippet_runs_from_any_folder(tmp_path):
    """As a user runs it: another working folder, the installed package, the bundled model and sample."""
    done = subprocess.run(
        [sys.executable, "-c", readme_snippet()],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "'water':" in done.stdout and "class_name" in done.stdout


def test_fit_trains_as_rsneo_train_and_export_makes_a_model_folder_load_serves(tmp_path):
    """The notebook's path on the tiny preset: the bundled Landsat folder as the user's GeoTIFFs, two steps,
    then two more resumed from the checkpoint, exported and loaded."""
    folder = rsneo.samples().series[0].parent
    overrides = [
        "model=tiny", "stage=stage1", "objectives=pretrain", "tokenizer=bundled", "data=torchgeo_raster",
        f"data.root={folder}", "data.sensor=landsat5_tm", "data.file_bands=[B5,B4,B3,B2]",
        "data.samples_per_epoch=8", "trainer.progress_bar=false", "trainer.tensorboard=false",
        "loss_curve=false", "trainer.checkpoint_every_n_steps=2", f"out_dir={tmp_path / 'run'}",
    ]  # fmt: skip
    run = rsneo.fit([*overrides, "trainer.max_steps=2"])
    assert run == (tmp_path / "run").resolve() and (run / "checkpoints" / "last.ckpt").is_file()
    rsneo.fit([*overrides, "trainer.max_steps=4", f"resume={run / 'checkpoints' / 'last.ckpt'}"])
    with open(run / "metrics.csv", newline="") as handle:
        steps = sorted({int(r["step"]) for r in csv.DictReader(handle) if r.get("train/loss")})
    assert steps == [0, 1, 2, 3]  # two steps, then two more continued from the checkpoint
    model = rsneo.export(run / "checkpoints" / "last.ckpt", tmp_path / "mine")
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    trained = checkpoint["state_dict"]
    loaded = rsneo.load(model).system.model.state_dict()
    for name in ("backbone.vision.patch_bias", "backbone.embed_tokens.weight"):  # copied as trained
        torch.testing.assert_close(loaded[name], trained[f"model.{name}"])
    with pytest.raises(InputError, match=r"rsneo train: expected KEY=VALUE overrides, got \['steps'\]"):
        rsneo.fit(["steps"])
    with pytest.raises(InputError, match="fit: experiment=finetune_change .* run `rsneo finetune change`"):
        rsneo.fit(["experiment=finetune_change"])


NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# `import rsneo.x.y`, `from rsneo.x import ...`: anything below the package itself
DEEP_IMPORT = re.compile(r"^\s*(?:from\s+rsneo\.\w+|import\s+rsneo\.\w+)", re.MULTILINE)


def code_cells(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_use_the_public_api_only(notebook):
    """Notebooks teach what users may rely on: `import rsneo` and its attributes, never rsneo.demo or a
    module inside the package."""
    code = "\n".join(code_cells(notebook))
    assert "import rsneo" in code
    assert "rsneo.demo" not in code
    assert DEEP_IMPORT.findall(code) == []


def test_the_notebook_check_finds_deep_imports():
    found = DEEP_IMPORT.findall("import rsneo\nfrom rsneo.predict.segment import x\n  import rsneo.errors\n")
    assert [f.split()[-1] for f in found] == ["rsneo.predict", "rsneo.errors"]
    assert len(NOTEBOOKS) >= 3
