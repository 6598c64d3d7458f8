"""What a command imports: heavy libraries only where they are used (issue 14, start-up of `rsneo change`).

Each check runs in a fresh interpreter and reads its `sys.modules`, because the test process itself has
imported everything by now. These are behavioural invariants (which modules a command loads), not timings;
the start-up figures are in benchmarks/change.py and benchmarks/startup.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Never needed to show help or to run `rsneo change` without class names.
NOT_FOR_HELP = ("transformers", "tokenizers", "geopandas", "lightning", "sklearn", "xarray", "torch")
NOT_FOR_CHANGE = ("transformers", "tokenizers", "lightning", "sklearn", "xarray", "matplotlib", "hydra")
PROBE = """
import contextlib, io, json, sys
import rsneo.cli.app
from rsneo.cli import main
sys.argv = ["rsneo", *json.loads(sys.argv[1])]
try:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main()  # as the `rsneo` script runs it: exits with the command's status
finally:
    print(json.dumps(sorted(m.split(".")[0] for m in sys.modules)))
"""


def imported_by(argv: list[str], status: int = 0) -> set[str]:
    """Top-level packages imported by `rsneo *argv` in a fresh interpreter, which exits with `status`."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert done.returncode == status, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--help"], ["change", "--help"], ["segment", "--help"]])
def test_help_imports_no_heavy_library(argv):
    assert imported_by(argv) & set(NOT_FOR_HELP) == set()


def png_pair(folder: Path, source: Path, size: int = 64) -> list[Path]:
    """The top-left `size` x `size` pixels of a LEVIR-CD pair as PNGs (no georeference, as the originals)."""
    import numpy as np
    from PIL import Image

    out = []
    for date in ("A", "B"):
        pixels = np.asarray(Image.open(source.parent.parent / date / source.name))[:size, :size]
        out.append(folder / f"{date}.png")
        Image.fromarray(pixels).save(out[-1])
    return out


def test_change_without_class_names_loads_no_text_stack(shared_data, tmp_path):
    """`rsneo change` needs the model and GDAL, and geopandas for the polygons; the tokenizer (transformers)
    is loaded only for class names, xarray only for training data."""
    label = sorted((shared_data / "levir_cd" / "label").glob("*.png"))[0]
    rasters = png_pair(tmp_path, label)
    modules = imported_by(["change", *map(str, rasters), "--out", str(tmp_path / "out")])
    assert {"torch", "rasterio", "geopandas"} <= modules  # the work was done: model, rasters, polygons
    assert modules & set(NOT_FOR_CHANGE) == set()


def test_outputs_are_complete_when_the_command_has_exited(shared_data, tmp_path):
    """`main` skips the last garbage collection at exit (`gc.freeze`); the outputs are whole by then and the
    exit status is the command's."""
    import geopandas as gpd
    import rasterio

    label = sorted((shared_data / "levir_cd" / "label").glob("*.png"))[0]
    rasters = png_pair(tmp_path, label)
    out = tmp_path / "out"
    imported_by(["change", *map(str, rasters), "--out", str(out)])
    with rasterio.open(out / "change.tif") as src:
        classes = src.read(1)
    polygons = gpd.read_file(out / "change.gpkg")
    assert classes.shape == (64, 64) and set(map(int, polygons["class_id"])) <= {1}
    assert polygons["area_px"].sum() == (classes == 1).sum()
    assert (out / "change_report.html").read_text().rstrip().endswith("</html>")
    imported_by(["change", str(rasters[0]), "--out", str(tmp_path / "one")], status=2)  # one date: refused


def test_the_tokenizer_loads_on_first_use(tiny_model_dir):
    """`load_system` leaves the tokenizer on disk; the first `system.tokenizer` loads it, once."""
    code = f"""
import dataclasses, sys
from rsneo.heads.system import load_system
system = load_system({str(tiny_model_dir)!r})
before = "transformers" in sys.modules
tokenizer = system.tokenizer
copy = dataclasses.replace(system, trained_heads=())
print(before, "transformers" in sys.modules, system.tokenizer is tokenizer, copy.tokenizer is tokenizer,
      tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>") == system.config.img_context_token_id)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "True", "True", "True"]


def test_a_model_folder_without_tokenizer_is_still_refused_at_load(tiny_model_dir, tmp_path):
    import shutil

    from rsneo.errors import InputError
    from rsneo.heads.system import load_system

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(InputError, match="expected a tokenizer folder with tokenizer.json"):
        load_system(folder)


def test_other_missing_attributes_are_still_attribute_errors(tiny_system):
    with pytest.raises(AttributeError, match="no attribute 'tokeniser'"):
        _ = tiny_system.tokeniser
