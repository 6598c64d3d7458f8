"""Shared fixtures: where the real sample imagery and the NEO golden vectors live, tiny models, a way to stop
a sliding-window run, and QGIS itself (headless) to open and draw what rsneo writes."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RSNEO_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"real sample data not found at {path} (set RSNEO_SHARED)")
    return path


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    path = SHARED / "golden"
    if not path.is_dir():
        pytest.skip(f"NEO golden vectors not found at {path} (set RSNEO_SHARED)")
    return path


TOKENIZER_TEXTS = [
    "a satellite image of water, land, open water, dry land, forest, vegetation, built-up areas, bare soil.",
    "What changed between these images? Describe the changes. How much water is there?",
] * 4


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random rsneo system saved as a model folder (no weights can be downloaded in tests)."""
    from rsneo.heads.system import random_system

    folder = tmp_path_factory.mktemp("tiny_model")
    random_system(folder, texts=TOKENIZER_TEXTS)
    return folder


@pytest.fixture(scope="session")
def tiny_system(tiny_model_dir):
    from rsneo.heads.system import load_system

    return load_system(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of a tiny random training module with both heads, holding what `rsneo train` saves for
    the model (`state_dict` and the module's `rsneo` record), without running a trainer."""
    import torch
    from omegaconf import OmegaConf

    from rsneo.heads.system import random_system
    from rsneo.train.config import load_config
    from rsneo.train.module import RSNeoTraining

    system = random_system(texts=TOKENIZER_TEXTS, seed=1)
    cfg = OmegaConf.to_container(load_config(["experiment=smoke"]), resolve=True)
    module = RSNeoTraining(system.model, cfg, system.tokenizer, system.segmentation, system.change)
    checkpoint = {"state_dict": module.state_dict(), "global_step": 0}
    module.on_save_checkpoint(checkpoint)
    path = tmp_path_factory.mktemp("checkpoint") / "last.ckpt"
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="session")
def water_label_points(shared_data, tmp_path_factory):
    """Makes labels as a user draws them for `rsneo learn`: `count` random pixels per class ("Flood water",
    "dry ground", field `cover`) of the hand-labelled Sen1Floods11 water mask, as points (or squares of
    `buffer_px` pixels around them), saved to `name` in the raster's CRS or in `to_crs`."""
    import geopandas as gpd
    import numpy as np
    import rasterio
    from shapely.geometry import Point

    def make(count: int, seed: int, name: str, buffer_px: float = 0.0, to_crs: int | None = None) -> Path:
        with rasterio.open(shared_data / "sen1floods11" / "Labels" / "Spain_7370579_LabelHand.tif") as src:
            label, transform, crs = src.read(1), src.transform, src.crs
        rng = np.random.default_rng(seed)
        records = []
        for value, cover in ((1, "Flood water"), (0, "dry ground")):
            rows, cols = np.nonzero(label == value)
            for i in rng.choice(len(rows), count, replace=False):
                point = Point(transform @ (cols[i] + 0.5, rows[i] + 0.5))
                records.append(
                    {
                        "cover": cover,
                        "geometry": point.buffer(abs(transform.a) * buffer_px) if buffer_px else point,
                    }
                )
        frame = gpd.GeoDataFrame(records, crs=crs)
        path = tmp_path_factory.mktemp("labels") / name
        (frame if to_crs is None else frame.to_crs(to_crs)).to_file(path)
        return path

    return make


@pytest.fixture(scope="session")
def flood_tiles(shared_data) -> list:
    """The Sen1Floods11 chip cut into 64-pixel samples by its recipe (S2 + S1 partner + mask), read once for
    every shard test."""
    import warnings

    from rsneo.data.recipes import RECIPES, load_tiles

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        [item] = RECIPES["sen1floods11"].items(shared_data / "sen1floods11")[:1]
        return load_tiles("sen1floods11", 64, item)


class RunStopped(Exception):
    """Raised by `stop_after_rows` where a killed run would have stopped."""


@pytest.fixture
def stop_after_rows():
    """`with stop_after_rows(n): ...` interrupts a sliding-window run (`predict_raster`, or a product that
    makes its map with it) right after its `n`-th window row of this call is durable, as a kill there would:
    the engine keeps its partial state and the exception, `RunStopped`, propagates. The next call resumes."""
    import contextlib

    from rsneo.predict import resume

    @contextlib.contextmanager
    def stopping(rows: int):
        original, saved = resume.save_row, []

        def save_row(*args, **kwargs):
            original(*args, **kwargs)
            saved.append(1)
            if len(saved) == rows:
                raise RunStopped(f"stopped after {rows} window rows")

        resume.save_row = save_row
        try:
            with pytest.raises(RunStopped):
                yield
        finally:
            resume.save_row = original

    return stopping


# ---- QGIS itself, headless: opens and draws the projects rsneo writes (Debian's python3-qgis) -------------

QGIS_PYTHON = "/usr/bin/python3"  # the system python, where python3-qgis installs its bindings
QGIS_PROBE = r"""
import json, sys
from qgis.core import QgsApplication, QgsProject
app = QgsApplication([], False)
app.initQgis()
project = QgsProject.instance()
out = {"read": project.read(sys.argv[1]), "crs": project.crs().authid(), "layers": []}
for layer in project.mapLayers().values():
    box = layer.extent()
    info = {"name": layer.name(), "valid": layer.isValid(), "crs": layer.crs().authid(), "classes": [],
            "extent": [box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()]}
    renderer = layer.renderer()
    info["renderer"] = renderer.type() if renderer else None
    if info["renderer"] == "paletted":
        info["classes"] = [[int(c.value), c.label, c.color.name()] for c in renderer.classes()]
    elif info["renderer"] == "categorizedSymbol":
        info["classes"] = [[c.value(), c.label(), c.symbol().color().name()] for c in renderer.categories()]
    out["layers"].append(info)
print("PROBE" + json.dumps(out))
app.exitQgis()
"""


QGIS_RENDER = r"""
import json, sys
from qgis.core import QgsApplication, QgsMapRendererSequentialJob, QgsMapSettings, QgsProject
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor
app = QgsApplication([], False)
app.initQgis()
project = QgsProject.instance()
args = json.loads(sys.argv[2])
ok = project.read(sys.argv[1])
tree = [node.layer() for node in project.layerTreeRoot().findLayers() if node.isVisible()]
layers = [layer for layer in tree if not args["layers"] or layer.name() in args["layers"]]
frame = next((layer for layer in tree if layer.name() == args["extent_of"]), None)
box = (frame or layers[0]).extent()
for layer in [] if frame else layers[1:]:
    box.combineExtentWith(layer.extent())
settings = QgsMapSettings()
settings.setLayers(layers)
settings.setDestinationCrs(project.crs())
settings.setBackgroundColor(QColor(255, 255, 255))
scale = args["size"] / max(box.width(), box.height())
settings.setOutputSize(QSize(round(box.width() * scale), round(box.height() * scale)))
settings.setExtent(box)
job = QgsMapRendererSequentialJob(settings)
job.start()
job.waitForFinished()
saved = job.renderedImage().save(sys.argv[3], "PNG")
print("PROBE" + json.dumps({"read": ok, "saved": saved, "layers": [layer.name() for layer in layers],
                            "extent": [box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()]}))
app.exitQgis()
"""


class HeadlessQgis:
    """Runs a QGIS script in a subprocess (offscreen, a private runtime folder); each prints one line
    "PROBE" + JSON, returned parsed."""

    def __init__(self, python: str = QGIS_PYTHON, timeout: float = 180) -> None:
        self.python, self.timeout = python, timeout

    @functools.cached_property
    def available(self) -> bool:
        """Whether the python can import QGIS's bindings (qgis.core)."""
        import subprocess

        if not Path(self.python).exists():
            return False
        try:
            done = subprocess.run([self.python, "-c", "import qgis.core"], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    def run(self, script: str, args: list[str]) -> dict:
        """The script's result; the test is skipped here where QGIS is not installed."""
        import json
        import subprocess
        import tempfile

        if not self.available:
            pytest.skip(
                f"QGIS's python bindings are not importable from {self.python} (apt install python3-qgis)"
            )

        with tempfile.TemporaryDirectory(prefix="rsneo-qgis-") as runtime:  # Qt wants a private (0700) one
            env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": runtime}
            done = subprocess.run(
                [self.python, "-c", script, *args],
                capture_output=True,
                text=True,
                timeout=self.timeout,
                env=env,
            )
        line = next((x for x in done.stdout.splitlines() if x.startswith("PROBE")), None)
        assert line is not None, f"QGIS could not open {args[0]}: {done.stderr.strip()[-500:]}"
        return json.loads(line[len("PROBE") :])

    def describe(self, project: Path) -> dict:
        """`project` as QGIS sees it: {"read", "crs", "layers": [{"name", "valid", "crs", "renderer",
        "extent": [xmin, ymin, xmax, ymax], "classes": [[value, label, colour]]}]}."""
        return self.run(QGIS_PROBE, [str(project)])

    def render(
        self,
        project: Path,
        png: Path,
        *,
        layers: list[str] | None = None,
        extent_of: str | None = None,
        size: int = 256,
    ) -> dict:
        """Draw `project` as QGIS would (white background) into `png`, `size` px on the long side: the layers
        named in `layers` (default all, in the project's order) over the extent of the layer `extent_of`
        (default: all drawn layers). Returns {"read", "saved", "layers", "extent"}."""
        import json

        args = json.dumps({"layers": layers or [], "extent_of": extent_of, "size": size})
        return self.run(QGIS_RENDER, [str(project), args, str(png)])


@pytest.fixture(scope="session")
def qgis() -> HeadlessQgis:
    """QGIS itself, to open and draw projects; a test using it is skipped at that point where Debian's
    python3-qgis is not installed."""
    return HeadlessQgis()


@pytest.fixture(scope="session")
def levir_folder(shared_data, tmp_path_factory):
    """Makes a change folder in the LEVIR-CD layout (`A/ B/ label/`, links to the shared crops) holding the
    pairs `names`, with `lists` ({split: names}) written to `list/SPLIT.txt`."""

    def make(names: tuple[str, ...], lists: dict[str, tuple[str, ...]] | None = None) -> Path:
        root = tmp_path_factory.mktemp("levir")
        for part in ("A", "B", "label"):
            (root / part).mkdir()
            for name in names:
                (root / part / f"{name}.png").symlink_to(shared_data / "levir_cd" / part / f"{name}.png")
        if lists:
            (root / "list").mkdir()
            for split, listed in lists.items():
                (root / "list" / f"{split}.txt").write_text("".join(f"{n}.png\n" for n in listed) or "\n")
        return root

    return make
