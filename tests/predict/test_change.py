"""Change pipeline pieces: Otsu's threshold and the from-to decoding of blended channels; input outside the
change head's training imagery warned about, noted in the report, refused under strict."""

from __future__ import annotations

import html
import warnings

import numpy as np
import pytest

from rsneo.errors import InputError, OutsideTrainingWarning
from rsneo.io.read import PixelUnitsWarning
from rsneo.predict.change import change_legend, detect_change, from_to_classifier, otsu_threshold


def test_otsu_threshold_splits_two_groups():
    values = np.concatenate([np.linspace(0.0, 0.1, 900), np.linspace(0.5, 0.7, 100)])
    threshold = otsu_threshold(values)
    assert 0.1 <= threshold <= 0.5


def test_from_to_classes_code_before_and_after():
    legend = change_legend(["water", "built-up"])  # + "none of these": 3 classes, 9 pairs
    assert legend.names[0] == "no change" and len(legend.names) == 10
    # channels: P(no change), P(change), before (3), after (3); pixel 0 water -> built-up, pixel 1 unchanged
    probs = np.zeros((8, 1, 2), np.float32)
    probs[:, 0, 0] = [0.2, 0.8, 0.9, 0.05, 0.05, 0.1, 0.85, 0.05]
    probs[:, 0, 1] = [0.7, 0.3, 0.9, 0.05, 0.05, 0.9, 0.05, 0.05]
    classes, confidence = from_to_classifier(3)(probs)
    assert legend.names[classes[0, 0]] == "water → built-up" and classes[0, 1] == 0
    np.testing.assert_allclose(confidence[0], [0.8, 0.7])
    binary, _ = from_to_classifier(None)(probs[:2])
    assert binary.tolist() == [[1, 0]]


def test_from_to_table_keeps_within_class_change_apart(tmp_path):
    import csv

    from rsneo.predict.change import _write_table

    rows = [
        ("vegetation → vegetation", 4181.0),
        ("water → built-up", 300.0),
        ("vegetation → built-up", 1071.0),
    ]
    path = tmp_path / "table.csv"
    _write_table(path, rows, compared=10_000.0, unit="ha")
    with path.open() as f:
        table = list(csv.DictReader(f))
    # class transitions first (largest first), the score-only change of one class after them, marked as such
    assert [(r["from"], r["to"], r["kind"]) for r in table] == [
        ("vegetation", "built-up", "between classes"),
        ("water", "built-up", "between classes"),
        ("vegetation", "vegetation", "within class"),
    ]
    assert float(table[2]["area_ha"]) == 4181.0
    _write_table(path, [("change", 12.0)], compared=100.0, unit="px")  # no classes asked: one plain row
    with path.open() as f:
        assert [(r["kind"], r["area_px"]) for r in csv.DictReader(f)] == [("change", "12")]


# ---- input outside the imagery the change head was trained on (rsneo.heads.domain) -------------------------


@pytest.fixture(scope="module")
def bundled():
    from rsneo.heads.system import load_system

    return load_system()


def _levir(shared_data, name: str = "test_7_0256_0512.png") -> list:
    return [shared_data / "levir_cd" / d / name for d in ("A", "B")]


def test_an_rgb_pair_is_warned_about_and_noted_in_the_report(bundled, shared_data, tmp_path):
    pair = _levir(shared_data)
    with pytest.warns(PixelUnitsWarning), pytest.warns(OutsideTrainingWarning) as caught:
        out = detect_change(bundled, pair, tmp_path)
    expected = (
        f"{pair[0]}, {pair[1]}: rgb imagery at an unknown pixel size; the change head was trained on "
        "sentinel2_l1c, sentinel2_l2a, landsat5_tm, naip at 5-90 m: its map here is unverified"
    )
    assert [str(w.message) for w in caught if w.category is OutsideTrainingWarning] == [expected]
    assert out.notes == (expected,)
    report = html.unescape(out.report.read_text())
    assert f"Outside the model's training data: {expected}." in report


def test_strict_refuses_an_rgb_pair_and_writes_nothing(bundled, shared_data, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match="--strict refuses input outside"):
        detect_change(bundled, _levir(shared_data), out, strict=True)
    assert not out.exists()


def test_new_buildings_do_not_use_the_model_and_are_not_warned_about(bundled, shared_data, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PixelUnitsWarning)  # the PNG pair has no georeference, as said above
        warnings.simplefilter("error", OutsideTrainingWarning)
        pair = _levir(shared_data)
        out = detect_change(bundled, pair, tmp_path, of="buildings", pixel_size=0.5, strict=True)
    assert out.notes == ()
