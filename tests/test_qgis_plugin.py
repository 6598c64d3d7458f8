"""The QGIS Processing provider (qgis_plugin/rsneo_qgis): `qgis_process run rsneo:segment` makes the same COG
as the CLI; learn writes a model folder from a polygon layer, ask gives the CLI's answer, info its
description; in QGIS, the outputs load back styled and draw; a cancelled run stops rsneo and leaves nothing.
The runner's logic (command, progress) is tested without QGIS."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

import rsneo
from rsneo.cli import run_app

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "qgis_plugin"
sys.path.insert(0, str(PLUGINS / "rsneo_qgis"))
import runner  # noqa: E402  (the plugin's QGIS-free module)

S2 = ("sen1floods11", "S2", "Spain_7370579_S2Hand.tif")


def test_the_command_is_the_setting_an_environment_python_or_rsneo(monkeypatch):
    monkeypatch.delenv(runner.COMMAND_ENV, raising=False)
    assert runner.rsneo_command("") == ["rsneo"]
    assert runner.rsneo_command("/opt/env/bin/python3") == ["/opt/env/bin/python3", "-m", "rsneo.cli"]
    assert runner.rsneo_command("/opt/env/bin/rsneo --debug") == ["/opt/env/bin/rsneo", "--debug"]
    monkeypatch.setenv(runner.COMMAND_ENV, "python -m rsneo.cli")
    assert runner.rsneo_command("/ignored") == ["python", "-m", "rsneo.cli"]


def test_progress_lines_become_a_rising_percentage():
    progress = runner.Progress()
    events = [{"stage": "check", "done": 0, "total": 2}, {"stage": "segment", "done": 0, "total": 2},
              {"stage": "windows", "done": 2, "total": 4}, {"stage": "windows", "done": 4, "total": 4},
              {"stage": "segment", "done": 1, "total": 2}, {"stage": "windows", "done": 4, "total": 4},
              {"stage": "segment", "done": 2, "total": 2}]  # fmt: skip
    seen = [progress.update(e) for e in events]
    assert seen[0] == 0.0 and seen == sorted(seen) and seen[-1] == pytest.approx(100.0)
    assert seen[2] == pytest.approx(5 + 95 * 0.25)  # half the windows of the first of two inputs


@pytest.fixture(scope="module")
def crop(shared_data, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("qgis") / "scene.tif"
    with rasterio.open(shared_data.joinpath(*S2)) as src:
        window = rasterio.windows.Window(0, 0, 256, 256)
        profile = {**src.profile, "width": 256, "height": 256, "transform": src.window_transform(window)}
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(src.read(window=window))
            dst.descriptions = src.descriptions
    return path


def qgis_env(tmp: Path, tiny_model_dir: Path) -> dict:
    (tmp / "runtime").mkdir(mode=0o700, exist_ok=True)
    return {
        **os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(tmp / "runtime"),
        "XDG_DATA_HOME": str(tmp / "data"), "QGIS_PLUGINPATH": str(PLUGINS), "PYTHONPATH": str(REPO),
        runner.COMMAND_ENV: f"{sys.executable} -m rsneo.cli",
    }  # fmt: skip


def qgis_process(tmp: Path, tiny_model_dir: Path, algorithm: str, *params: str) -> dict:
    """`qgis_process --json run rsneo:ALGORITHM -- KEY=VALUE ...` with the plugin enabled, headless; its
    results (the algorithm's outputs) and log."""
    binary = shutil.which("qgis_process.bin") or shutil.which("qgis_process")
    if binary is None:
        pytest.skip("qgis_process is not installed (apt install qgis)")
    env = qgis_env(tmp, tiny_model_dir)
    subprocess.run([binary, "plugins", "enable", "rsneo_qgis"], env=env, capture_output=True, timeout=120)
    done = subprocess.run(
        [binary, "--json", "run", f"rsneo:{algorithm}", "--", *params],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def cli_json(capsys, *argv: str) -> dict:
    """The --json document of `rsneo ARGV`."""
    capsys.readouterr()
    assert run_app([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.qgis
def test_qgis_process_segment_writes_the_cli_cog(crop, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "qgis"
    results = qgis_process(
        tmp_path, tiny_model_dir, "segment", f"INPUT={crop}", "CLASSES=water, land",
        f"MODEL={tiny_model_dir}", f"OUTPUT={out}",
    )["results"]  # fmt: skip
    assert results["CLASS_MAP"] == str(out / "scene_classes.tif")
    cli = tmp_path / "cli"
    argv = ["segment", str(crop), "--classes", "water, land", "--model", str(tiny_model_dir),
            "--out", str(cli)]  # fmt: skip
    assert run_app(argv) == 0
    capsys.readouterr()
    with rasterio.open(out / "scene_classes.tif") as a, rasterio.open(cli / "scene_classes.tif") as b:
        assert (a.crs, a.transform, a.shape) == (b.crs, b.transform, b.shape)
        assert a.tags(1)["class_names"] == b.tags(1)["class_names"]
        np.testing.assert_array_equal(a.read(1), b.read(1))  # class indices: exact
        assert a.colormap(1) == b.colormap(1)


@pytest.mark.qgis
def test_qgis_process_learn_writes_a_model_folder_from_a_polygon_layer(
    shared_data, water_label_points, tiny_model_dir, tmp_path
):
    """Six small squares per class drawn on the Sen1Floods11 chip, two training steps: the folder, its
    learnt classes and their hold-out scores come back as the algorithm's outputs."""
    polygons = water_label_points(6, seed=3, name="squares.gpkg", buffer_px=2)
    out = tmp_path / "learnt"
    done = qgis_process(
        tmp_path, tiny_model_dir, "learn", f"RASTERS={shared_data.joinpath(*S2)}", f"LABELS={polygons}",
        "FIELD=cover", "STEPS=2", "FOLDS=2", "FEATURES=2", f"MODEL={tiny_model_dir}", f"OUTPUT={out}",
    )  # fmt: skip
    results = done["results"]
    assert results["MODEL_FOLDER"] == str(out)
    scores = json.loads(results["SCORES"])
    assert set(scores) == {"Flood water", "dry ground"}
    assert all(s["features"] == 6 and 0.0 <= s["iou"] <= s["f1"] <= 1.0 for s in scores.values())
    record = json.loads((out / "learn.json").read_text())
    assert record["learnt_classes"] == ["Flood water", "dry ground"]
    assert record["settings"]["folds"] == 2 and record["holdout"]["method"].startswith("spatial 2-fold")
    assert record["features"]["features"] == "pixels"  # FEATURES=2: the raw bands only, as chosen
    assert {n: s["pixels"] for n, s in scores.items()} == {
        n: s["pixels"] for n, s in record["holdout"]["scores"].items()
    }
    assert rsneo.load(out).folder == out  # a model folder Segment's Model folder (and rsneo.load) takes


@pytest.mark.qgis
def test_qgis_process_ask_prints_the_cli_answer(crop, tiny_model_dir, tmp_path, capsys):
    question = "How much of the image is water?"
    done = qgis_process(
        tmp_path, tiny_model_dir, "ask", f"RASTERS={crop}", f"QUESTION={question}", f"MODEL={tiny_model_dir}"
    )
    answer = done["results"]["ANSWER"]
    (item,) = cli_json(capsys, "ask", str(crop), question, "--model", str(tiny_model_dir))["items"]
    assert answer == item["answer"] and "%" in answer  # read from the same class map: the same words
    assert answer in json.dumps(done["log"])  # shown in the Processing dialog's log


@pytest.mark.qgis
def test_qgis_process_info_returns_the_cli_report(crop, tiny_model_dir, tmp_path, capsys):
    report = json.loads(qgis_process(tmp_path, tiny_model_dir, "info", f"INPUT={crop}")["results"]["INFO"])
    (cli,) = cli_json(capsys, "info", str(crop))["rasters"]
    assert report["sensor"] == cli["sensor"] == "sentinel2_l1c"
    assert [b["name"] for b in report["bands"]] == [b["name"] for b in cli["bands"]]
    assert len(report["bands"]) == 13 and report.keys() == cli.keys()


QGIS_RUN = r"""
import json, sys
from pathlib import Path
from qgis.core import (QgsApplication, QgsProcessingContext, QgsProcessingFeedback, QgsProject,
                       QgsRasterLayer, QgsMapSettings, QgsMapRendererSequentialJob)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor
app = QgsApplication([], False)
app.initQgis()
sys.path += ["/usr/share/qgis/python/plugins", sys.argv[2]]
from processing.core.Processing import Processing
Processing.initialize()
from rsneo_qgis.provider import RsneoProvider
provider = RsneoProvider()  # kept: the registry does not own a Python provider
QgsApplication.processingRegistry().addProvider(provider)
args = json.loads(sys.argv[3])
project = QgsProject.instance()
scene = QgsRasterLayer(sys.argv[1], "scene")
project.addMapLayer(scene)

class Cancelling(QgsProcessingFeedback):
    errors = []

    def reportError(self, error, fatalError=False):
        self.errors.append(error)
        super().reportError(error, fatalError)

    def setProgress(self, value):
        super().setProgress(value)
        if args["cancel"] and value > 5:
            self.cancel()

context = QgsProcessingContext()
context.setProject(project)
feedback = Cancelling()
alg = QgsApplication.processingRegistry().createAlgorithmById("rsneo:segment")
params = {"INPUT": scene.id(), "CLASSES": "water, land", "MODEL": args["model"], "OUTPUT": args["out"]}
try:
    results, ok = alg.run(params, context, feedback)
    error = None
except Exception as exc:
    results, ok, error = {}, False, str(exc)
loaded = []
if ok:
    for path, details in context.layersToLoadOnCompletion().items():
        layer = QgsRasterLayer(path, details.name) if path.endswith(".tif") else None
        if layer is None:
            continue
        project.addMapLayer(layer)
        if details.postProcessor():
            details.postProcessor().postProcessLayer(layer, context, feedback)
        loaded.append({"name": layer.name(), "renderer": layer.renderer().type(),
                       "classes": [c.label for c in layer.renderer().classes()]})
        settings = QgsMapSettings()
        settings.setLayers([layer])
        settings.setDestinationCrs(layer.crs())
        settings.setBackgroundColor(QColor(255, 255, 255))
        settings.setOutputSize(QSize(256, 256))
        settings.setExtent(layer.extent())
        job = QgsMapRendererSequentialJob(settings)
        job.start()
        job.waitForFinished()
        job.renderedImage().save(args["png"], "PNG")
error = error or "; ".join(feedback.errors) or None
print("PROBE" + json.dumps({"ok": ok, "error": error, "cancelled": feedback.isCanceled(), "loaded": loaded,
                            "progress": feedback.progress()}))
app.exitQgis()
"""


@pytest.mark.qgis
def test_in_qgis_the_class_map_loads_styled_and_a_cancelled_run_leaves_nothing(
    qgis, crop, tiny_model_dir, tmp_path, monkeypatch
):
    """Loaded back: a paletted layer with the legend's labels, drawn to PNG (looked at: water blue, land
    brown-green). Cancelled once windows have started: rsneo is stopped and the output folder is gone."""
    env = qgis_env(tmp_path, tiny_model_dir)
    monkeypatch.setenv(runner.COMMAND_ENV, env[runner.COMMAND_ENV])
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    png = tmp_path / "classes.png"
    done = qgis.run(
        QGIS_RUN,
        [
            str(crop),
            str(PLUGINS),
            json.dumps(
                {
                    "model": str(tiny_model_dir),
                    "out": str(tmp_path / "styled"),
                    "png": str(png),
                    "cancel": False,
                }
            ),
        ],
    )
    assert done["ok"], done
    (layer,) = done["loaded"]
    assert layer["renderer"] == "paletted" and layer["classes"][:2] == ["water", "land"]
    with rasterio.open(tmp_path / "styled" / "scene_classes.tif") as src:
        values, colours = src.read(1), src.colormap(1)
    drawn = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    common, _ = np.unique(drawn, axis=0, return_counts=True)
    top = common[np.argmax(_)]
    majority = np.bincount(values.ravel()).argmax()  # the most frequent class is the most drawn colour
    # drawn with the style's opacity over white: the same share of the class colour in every channel
    share = (255 - top.astype(float)) / (255 - np.asarray(colours[majority][:3], float))
    assert np.ptp(share) < 0.03 and 0.3 < share.mean() <= 1.0, (top, colours[majority])
    out = tmp_path / "cancelled"
    done = qgis.run(
        QGIS_RUN,
        [
            str(crop),
            str(PLUGINS),
            json.dumps({"model": str(tiny_model_dir), "out": str(out), "png": str(png), "cancel": True}),
        ],
    )
    assert not done["ok"] and done["cancelled"] and "cancelled" in done["error"], done
    assert not out.exists()  # the run made the folder: it is removed with everything in it


def test_the_plugin_zip_holds_the_package_and_its_metadata(tmp_path):
    import zipfile

    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "build_qgis_plugin.sh"), str(tmp_path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    archive = Path(done.stdout.strip())
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
        metadata = z.read("rsneo_qgis/metadata.txt").decode()
    assert archive.name == "rsneo_qgis-0.1.0.zip" and list(tmp_path.iterdir()) == [archive]
    assert {"rsneo_qgis/__init__.py", "rsneo_qgis/provider.py", "rsneo_qgis/runner.py"} <= names
    assert "hasProcessingProvider=yes" in metadata and "qgisMinimumVersion=3.22" in metadata
