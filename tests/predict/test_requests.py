"""The typed records the products take (`rsneo.predict.requests`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rsneo.errors import InputError
from rsneo.predict.requests import AskRequest, ChangeRequest, SegmentRequest, check_dates, parse_classes
from rsneo.predict.sliding_window import WindowPlan


@pytest.mark.parametrize(
    ("text", "names"),
    [("water, land", ["water", "land"]), (" water ,forest,, built-up ", ["water", "forest", "built-up"])],
)
def test_class_lists_are_split_and_trimmed(text, names):
    assert parse_classes(text) == names
    assert parse_classes(names) == names


@pytest.mark.parametrize(
    ("text", "message"), [(" , ", "expected a comma-separated list"), ("water, Water", "must differ")]
)
def test_empty_or_repeated_class_lists_are_refused(text, message):
    with pytest.raises(InputError, match=f"--classes: .*{message}"):
        parse_classes(text)


def test_records_hold_paths_and_tuples_and_share_how_rasters_are_read():
    request = ChangeRequest(rasters=["a.tif", "b.tif"], out="out", bands=["B4", "B3", "B2"])
    assert request.rasters == (Path("a.tif"), Path("b.tif")) and request.out == Path("out")
    assert request.bands == ("B4", "B3", "B2") and request.band_list == ["B4", "B3", "B2"]
    assert request.plan == WindowPlan() and not request.show_progress
    single = AskRequest(rasters="a.tif", question="How much water?")
    assert single.rasters == (Path("a.tif"),) and single.band_list is None and single.max_side == 512
    segment = SegmentRequest("a.tif", "water, land", "out", plan=WindowPlan(128, 16, 2))
    assert segment.raster == Path("a.tif") and segment.plan.size == 128
    with pytest.raises(AttributeError):
        segment.out = Path("elsewhere")  # frozen: a request says what was asked, once


def test_change_needs_two_dates_that_exist(tmp_path):
    with pytest.raises(InputError, match="expected two or more rasters"):
        check_dates([tmp_path / "a.tif"])
    (tmp_path / "a.tif").touch()
    with pytest.raises(InputError, match="b.tif: file not found"):
        check_dates([tmp_path / "a.tif", tmp_path / "b.tif"])
