"""What change-kind products write around their map (`rsneo.predict.change_outputs`)."""

from __future__ import annotations

import csv

from rsneo.predict.change_outputs import ChangeTotals, _input_names, write_table


def test_from_to_table_keeps_within_class_change_apart(tmp_path):
    rows = [
        ("vegetation → vegetation", 4181.0),
        ("water → built-up", 300.0),
        ("vegetation → built-up", 1071.0),
    ]
    path = tmp_path / "table.csv"
    write_table(path, ChangeTotals(rows, changed=5552.0, compared=10_000.0, unit="ha"))
    with path.open() as f:
        table = list(csv.DictReader(f))
    # class transitions first (largest first), the score-only change of one class after them, marked as such
    assert [(r["from"], r["to"], r["kind"]) for r in table] == [
        ("vegetation", "built-up", "between classes"),
        ("water", "built-up", "between classes"),
        ("vegetation", "vegetation", "within class"),
    ]
    assert float(table[2]["area_ha"]) == 4181.0 and table[2]["percent_of_compared"] == "41.810"
    write_table(path, ChangeTotals([("change", 12.0)], 12.0, 100.0, "px"))  # no classes asked: one plain row
    with path.open() as f:
        assert [(r["kind"], r["area_px"]) for r in csv.DictReader(f)] == [("change", "12")]


def test_dates_of_one_name_are_told_apart_by_their_folder(tmp_path):
    levir = [tmp_path / "A" / "x.png", tmp_path / "B" / "x.png"]
    assert _input_names(levir) == ["A/x.png", "B/x.png"]
    assert _input_names([tmp_path / "2000TM", tmp_path / "2003TM"]) == ["2000TM", "2003TM"]


def test_the_report_says_what_each_typed_class_was_read_as():
    from dataclasses import replace

    from rsneo.predict.change_classes import change_legend
    from rsneo.predict.change_outputs import _notes

    legend = change_legend(["water", "cropland"], ("cropland",))
    legend = replace(legend, read_as=(("cropland", "read as land, broader"),))
    notes = _notes(legend, pixel_units=False, how_mapped=None)
    assert '"cropland" is read as land, broader by the model.' in notes
    assert any("marked (untrained)" in n for n in notes)
