"""`rsneo evaluate` on the command line: a change folder's test split with a model folder, tables or one JSON
document on stdout; bad input exits 2 with the file or option named."""

from __future__ import annotations

import json

import pytest

from rsneo.cli import run_app
from rsneo.cli.documents import EvaluateDocument

PAIRS = ("test_2_0000_0000", "test_7_0256_0512", "train_36_0512_0512")
SMALL = ["--window", "256", "--overlap", "32", "--batch", "2"]


@pytest.fixture(scope="module")
def levir(levir_folder):
    """Three real LEVIR-CD pairs in the change layout, two of them listed in list/test.txt, none in val."""
    return levir_folder(PAIRS, {"test": PAIRS[:2], "val": ()})


def stderr(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())


def test_json_document_of_a_test_split(levir, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "kept"
    argv = ["evaluate", str(tiny_model_dir), str(levir), "--split", "test", "--json", "--out", str(out)]
    argv += SMALL
    assert run_app(argv) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    EvaluateDocument.model_validate(doc)  # the documented schema, nothing beside it
    assert doc["command"] == "evaluate" and doc["task"] == "change" and doc["split"] == "test" and doc["ok"]
    assert doc["classes"] == doc["predicted_classes"] == ["no change", "change"]
    assert [s["name"] for s in doc["per_sample"]] == ["test_2_0000_0000", "test_7_0256_0512"]
    assert doc["pixels"] == {"scored": 2 * 256 * 256, "unpredicted": 0}
    assert sum(map(sum, doc["confusion"])) == 2 * 256 * 256
    assert set(doc["baselines"]) == {"CVA + Otsu", "all changed"}
    change = doc["per_class"]["change"]
    assert set(change) == {"iou", "f1", "precision", "recall", "support", "predicted"}
    assert doc["baselines"]["all changed"]["per_class"]["change"]["recall"] == 1.0
    assert json.loads((out / "evaluation.json").read_text())["confusion"] == doc["confusion"]
    assert "no georeference" in captured.err  # the readers' warnings, summarised on stderr
    assert any("no georeference" in w for w in doc["warnings"])  # and kept in the document


def test_tables_name_the_model_and_the_baselines(levir, tiny_model_dir, capsys):
    assert run_app(["evaluate", str(tiny_model_dir), str(levir), "--split", "test", *SMALL]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"change: 2 pairs of {levir}, model {tiny_model_dir}")
    assert "confusion matrix (pixels; rows: reference, columns: predicted)" in out
    for row in (f"rsneo ({tiny_model_dir})", "CVA + Otsu", "all changed"):
        assert row in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--classes", "0=a,1=b"], "--classes: change folders are scored as change / no change"),
        (["--split", "val"], "val.txt: split 'val' is empty; expected at least one pair"),
        (["--split", "train"], "train.txt: split 'train' not found; the lists of"),
        (["--chip", "64"], "--chip: cuts segmentation images"),
    ],
)
def test_bad_input_exits_2(levir, tiny_model_dir, capsys, extra, message):
    assert run_app(["evaluate", str(tiny_model_dir), str(levir), *extra]) == 2
    assert message in stderr(capsys)


def test_segmentation_needs_a_class_table_and_a_mask_folder(levir, tiny_model_dir, tmp_path, capsys):
    assert run_app(["evaluate", "bundled", str(levir / "A"), str(levir / "label")]) == 2
    assert "--classes: expected the class table of the masks in" in stderr(capsys)
    missing = tmp_path / "masks"
    assert run_app(["evaluate", "bundled", str(levir / "A"), str(missing), "--classes", "0=a,255=b"]) == 2
    assert f"{missing}: expected two folders (matched by name) or two raster files" in stderr(capsys)
    assert run_app(["evaluate", str(tmp_path), str(levir)]) == 2
    assert f"{tmp_path}: expected a model folder" in stderr(capsys)
