"""`rsneo.predict.ask`: one question over one raster or several dates; the dates come from each raster, a
question it cannot answer is answered with what it cannot say, and bad input is refused before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import rasterio
from rasterio.windows import Window

from rsneo.errors import InputError
from rsneo.predict.ask import ask
from rsneo.predict.requests import AskRequest

NAIP = "timeseries/naip_m4709963"
DATES = ("20090818", "20100629")


@pytest.fixture(scope="module")
def naip_pair(shared_data, tmp_path_factory) -> list[Path]:
    """128-pixel crops of two NAIP dates of one place, under their scene names (which carry the dates)."""
    folder = tmp_path_factory.mktemp("naip")
    out = []
    for date in DATES:
        name = f"m_4709963_se_14_1_{date}.tif"
        with rasterio.open(shared_data / NAIP / name) as src:
            window = Window(0, 0, 128, 128)
            profile = src.profile | {"width": 128, "height": 128, "transform": src.window_transform(window)}
            profile["photometric"] = "minisblack"  # as the source: 4 data bands (GDAL would tag band 4 alpha)
            with rasterio.open(folder / name, "w", **profile) as dst:
                dst.write(src.read(window=window))
        out.append(folder / name)
    return out


def test_a_change_question_over_one_date_abstains_without_a_figure(tiny_system, naip_pair):
    answer = ask(
        tiny_system, AskRequest(rasters=naip_pair[:1], question="What changed between these images?")
    )
    assert answer.kind == "change" and answer.abstained and answer.value is None
    assert "needs two or more images of the same place" in answer.text and "%" not in answer.text


def test_a_change_question_over_two_dates_names_the_dates_read_from_the_rasters(tiny_system, naip_pair):
    answer = ask(tiny_system, AskRequest(rasters=naip_pair, question="Has anything changed?", max_side=128))
    assert answer.kind == "change" and not answer.abstained
    assert 0.0 <= answer.value <= 100.0
    assert answer.text.endswith("changed between 2009-08-18 and 2010-06-29.")


def test_unsupported_questions_abstain(tiny_system, naip_pair):
    answer = ask(tiny_system, AskRequest(rasters=naip_pair[:1], question="How many buildings are there?"))
    assert answer.abstained and answer.kind == "unsupported"
    assert answer.text.startswith("The model was not trained to answer this kind of question.")


@pytest.mark.parametrize(
    ("rasters", "question", "message"),
    [
        (["x.tif"], "   ", "ask: expected a question, got an empty string"),
        ([], "What is there?", "ask: expected one or more rasters before the question"),
        (["missing.tif"], "What is there?", "missing.tif: file not found"),
    ],
)
def test_bad_input_is_refused_before_any_work(tiny_system, rasters, question, message):
    with pytest.raises(InputError, match=message):
        ask(tiny_system, AskRequest(rasters=[Path(r) for r in rasters], question=question))
