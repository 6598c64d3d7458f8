"""Shared fixtures: where the real sample imagery and the NEO golden vectors live, tiny models, a way to stop
a sliding-window run, and QGIS itself (headless) to open and draw what rsneo writes."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RSNEO_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory) -> Path:
    """Caches rsneo keeps for the user (the bundled model's prompt vectors) go to a temporary folder."""
    path = tmp_path_factory.mktemp("xdg_cache")
    os.environ["XDG_CACHE_HOME"] = str(path)
    return path


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


class LoopbackServer:
    """A static HTTP server on 127.0.0.1 for remote-data tests: files under `root` with range requests (as a
    COG host serves them) and a static STAC API under /stac (landing page, item search over `stac_items` by
    collection, bbox and datetime); it counts the bytes of file content it sends per path. It binds loopback
    only, serves on a daemon thread and stops at the end of its fixture, or by itself after `lifetime` s.
    Paths under /slow/ answer after `delay` s (timeouts); a missing file is a 404."""

    def __init__(self, root: Path, lifetime: float = 600, delay: float = 5) -> None:
        import http.server
        import threading

        self.root, self.delay = Path(root), delay
        self.sent: dict[str, int] = {}
        self.requests: list[str] = []
        self.stac_items: list[dict] = []
        handler = _loopback_handler(self)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()

    def stop(self) -> None:
        self._timer.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()

    def bytes_sent(self, name: str) -> int:
        return self.sent.get("/" + name.lstrip("/"), 0)


def _loopback_handler(server: LoopbackServer):
    import contextlib
    import email.utils
    import http.server
    import json
    import time
    from urllib.parse import parse_qs, urlparse

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet: the tests read `requests`
            pass

        def do_HEAD(self) -> None:
            self._file(head=True)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            server.requests.append(f"GET {self.path} {self.headers.get('Range', '')}")
            if url.path.rstrip("/") == "/stac":
                self._json(self._landing())
            elif url.path == "/stac/search":
                self._json(self._search({k: v[0] for k, v in parse_qs(url.query).items()}))
            else:
                self._file(head=False)

        def do_POST(self) -> None:
            server.requests.append(f"POST {self.path}")
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if urlparse(self.path).path != "/stac/search":
                self.send_error(404)
                return
            self._json(self._search(body))

        def _landing(self) -> dict:
            base = f"{server.url}/stac"
            return {
                "type": "Catalog", "id": "loopback", "stac_version": "1.0.0", "description": "test API",
                "conformsTo": ["https://api.stacspec.org/v1.0.0/core",
                               "https://api.stacspec.org/v1.0.0/item-search"],
                "links": [
                    {"rel": "self", "href": base, "type": "application/json"},
                    {"rel": "root", "href": base, "type": "application/json"},
                    {"rel": "search", "href": f"{base}/search", "type": "application/geo+json",
                     "method": "GET"},
                    {"rel": "search", "href": f"{base}/search", "type": "application/geo+json",
                     "method": "POST"},
                ],
            }  # fmt: skip

        def _search(self, query: dict) -> dict:
            collections = query.get("collections") or []
            collections = collections.split(",") if isinstance(collections, str) else collections
            bbox = query.get("bbox")
            bbox = [float(v) for v in bbox.split(",")] if isinstance(bbox, str) else bbox
            found = []
            for item in server.stac_items:
                if collections and item.get("collection") not in collections:
                    continue
                if bbox and not _boxes_meet(bbox, item["bbox"]):
                    continue
                when = item["properties"]["datetime"]
                if query.get("datetime") and not _in_interval(when, query["datetime"]):
                    continue
                found.append(item)
            limit = int(query.get("limit") or 100)
            return {"type": "FeatureCollection", "features": found[:limit], "links": [],
                    "numberMatched": len(found), "numberReturned": min(len(found), limit)}  # fmt: skip

        def _json(self, document: dict) -> None:
            data = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _file(self, head: bool) -> None:
            path = urlparse(self.path).path
            if path.startswith("/slow/"):
                time.sleep(server.delay)
                path = path[len("/slow") :]
            file = server.root / path.lstrip("/")
            if not file.is_file() or ".." in path:
                self.send_error(404)
                return
            size = file.stat().st_size
            start, end = 0, size - 1
            ranged = self.headers.get("Range", "").removeprefix("bytes=")
            if ranged:
                first, _, last = ranged.partition("-")
                start, end = int(first), min(int(last) if last else size - 1, size - 1)
            self.send_response(206 if ranged else 200)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Last-Modified", email.utils.formatdate(file.stat().st_mtime, usegmt=True))
            if ranged:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if head:
                return
            with open(file, "rb") as f:
                f.seek(start)
                data = f.read(end - start + 1)
            server.sent[path] = server.sent.get(path, 0) + len(data)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client hung up
                self.wfile.write(data)

    return Handler


def _boxes_meet(a: list[float], b: list[float]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _in_interval(when: str, interval: str) -> bool:
    """`when` (ISO date-time) inside a STAC datetime interval "start/end" (".." open) or on a single day."""
    start, _, end = interval.partition("/")
    day = when[:10]
    if not end:
        return day == start[:10]
    return (start in ("", "..") or day >= start[:10]) and (end in ("", "..") or day <= end[:10])


@pytest.fixture
def loopback(tmp_path):
    """A `LoopbackServer` over a fresh folder (tmp_path / "www"); stopped at the end of the test."""
    root = tmp_path / "www"
    root.mkdir()
    server = LoopbackServer(root)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def levir_crops(shared_data, tmp_path_factory) -> Path:
    """A change folder (A/ B/ label/) of the top-left 128 x 128 pixels of three real LEVIR-CD pairs: what the
    fine-tuning tests train on, a quarter of the pixels of the whole crops."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("levir_crops")
    for folder in ("A", "B", "label"):
        (root / folder).mkdir()
        for name in ("test_2_0000_0000", "test_7_0256_0512", "train_36_0512_0512"):
            pixels = np.asarray(Image.open(shared_data / "levir_cd" / folder / f"{name}.png"))[:128, :128]
            Image.fromarray(pixels).save(root / folder / f"{name}.png")
    return root
