"""`rsneo.heads.domain`: a model folder records the imagery each head was trained on (domain.json), and an
input of another sensor or pixel size is warned about by name, refused under strict, and never by a folder
that records nothing."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from rsneo.errors import InputError, OutsideTrainingWarning
from rsneo.heads.domain import (
    DOMAIN_JSON,
    HeadDomain,
    Imagery,
    TrainingDomain,
    check_inputs,
    imagery,
    is_outside,
    load_domain,
    pixel_size,
    save_domain,
)
from rsneo.heads.system import BUNDLED_MODEL, load_system

LEVIR = "levir_cd/B/test_7_0256_0512.png"
S2_CHIP = "sen1floods11/S2/Spain_7370579_S2Hand.tif"


@pytest.fixture(scope="module")
def bundled():
    return load_system()


def test_domain_json_round_trips(tmp_path):
    domain = TrainingDomain(
        {
            "segmentation": HeadDomain(("sentinel2_l1c",), (10.0, 10.0)),
            "change": HeadDomain(("naip", "landsat5_tm"), (5.0, 89.224)),
        },
        "a note",
    )
    path = save_domain(tmp_path, domain)
    assert path == tmp_path / DOMAIN_JSON
    assert load_domain(tmp_path) == domain
    assert not list(tmp_path.glob(".*"))  # nothing hidden left behind by the atomic write


def test_a_head_without_a_pixel_range_round_trips_too(tmp_path):
    domain = TrainingDomain({"segmentation": HeadDomain(("rgb",))})
    save_domain(tmp_path, domain)
    assert load_domain(tmp_path) == domain


def test_a_folder_without_domain_json_records_nothing(tmp_path):
    assert load_domain(tmp_path) is None
    assert load_domain(None) is None


@pytest.mark.parametrize(
    "text",
    ['{"heads": {"segmentation": {}}}', "not json", '{"heads": {"detection": {"sensors": ["rgb"]}}}'],
)
def test_a_broken_domain_json_names_the_file(tmp_path, text):
    (tmp_path / DOMAIN_JSON).write_text(text)
    with pytest.raises(InputError, match=DOMAIN_JSON):
        load_domain(tmp_path)


def test_the_bundled_domain_lists_what_the_model_card_says():
    """Segmentation: the Sen1Floods11 Sentinel-2 L1C chip only (10 m); change: simulated pairs of those tiles,
    the BigEarthNet L2A patches and the Pucallpa composites (landsat5_tm, about 90 m), combination fit on
    NAIP (about 5 m). docs/model_card.md names this file where it lists the training data."""
    domain = load_domain(BUNDLED_MODEL)
    assert domain.heads["segmentation"].sensors == ("sentinel2_l1c",)
    assert domain.heads["segmentation"].pixel_size_m == pytest.approx((10.0, 10.0))
    change = domain.heads["change"]
    assert set(change.sensors) == {"sentinel2_l1c", "sentinel2_l2a", "landsat5_tm", "naip"}
    assert change.pixel_size_m == pytest.approx((5.0, 90.0))
    card = (Path(__file__).resolve().parents[2] / "docs" / "model_card.md").read_text()
    assert "domain.json" in card
    assert load_system().domain == domain


def test_describe_says_sensors_and_sizes():
    assert HeadDomain(("sentinel2_l1c",), (10.0, 10.0)).describe() == "sentinel2_l1c at 10 m only"
    assert HeadDomain(("naip", "landsat5_tm"), (5.0, 90.0)).describe() == "naip, landsat5_tm at 5-90 m"
    assert HeadDomain(("rgb",)).describe() == "rgb"


def test_including_widens_sensors_and_range():
    head = HeadDomain(()).including("naip", 5.0).including("landsat5_tm", 89.2).including("naip", None)
    assert head.sensors == ("naip", "landsat5_tm")
    assert head.pixel_size_m == pytest.approx((5.0, 89.2))


@pytest.mark.parametrize(
    ("sensor", "size", "outside"),
    [
        ("sentinel2_l1c", 10.0, False),
        ("sentinel2_l1c", 5.0, False),  # half the smallest: still inside
        ("sentinel2_l1c", 20.0, False),  # twice the largest: still inside
        ("sentinel2_l1c", 4.0, True),
        ("sentinel2_l1c", 25.0, True),
        ("sentinel2_l1c", None, True),  # unknown size while the range is known
        ("rgb", 10.0, True),  # a sensor never trained on
    ],
)
def test_outside_by_sensor_or_pixel_size(sensor, size, outside):
    head = HeadDomain(("sentinel2_l1c",), (10.0, 10.0))
    assert is_outside(head, Imagery(Path("x.tif"), sensor, size)) is outside


def test_an_unrecorded_range_checks_the_sensor_only():
    head = HeadDomain(("rgb",))
    assert not is_outside(head, Imagery(Path("x.png"), "rgb", None))


def test_real_inputs_sensor_and_pixel_size(shared_data):
    levir = imagery(shared_data / LEVIR)
    assert (levir.sensor, levir.pixel_size) == ("rgb", None)
    chip = imagery(shared_data / S2_CHIP)  # EPSG:4326 at 40 N: 10 m north-south, 7.7 m east-west
    assert chip.sensor == "sentinel2_l1c"
    assert chip.pixel_size == pytest.approx(8.86, abs=0.05)
    assert pixel_size(shared_data / "landsat_change_taizhou" / "2000TM") == pytest.approx(30.0, abs=0.1)
    naip = sorted((shared_data / "timeseries" / "naip_m4709963").glob("*.tif"))[0]
    assert pixel_size(naip) == pytest.approx(5.0, abs=0.05)


def test_an_rgb_photo_is_outside_the_bundled_segmentation_head(bundled, shared_data):
    path = shared_data / LEVIR
    with pytest.warns(OutsideTrainingWarning) as caught:
        note = check_inputs(bundled, "segmentation", [path])
    expected = (
        f"{path}: rgb imagery at an unknown pixel size; the segmentation head was trained on "
        "sentinel2_l1c at 10 m only: its map here is unverified"
    )
    assert [str(w.message) for w in caught] == [expected]
    assert note == expected


def test_the_dates_of_a_pair_are_named_in_one_warning(bundled, shared_data):
    pair = [shared_data / "levir_cd" / d / "test_7_0256_0512.png" for d in ("A", "B")]
    with pytest.warns(OutsideTrainingWarning) as caught:
        check_inputs(bundled, "change", pair)
    assert len(caught) == 1
    assert str(caught[0].message) == (
        f"{pair[0]}, {pair[1]}: rgb imagery at an unknown pixel size; the change head was trained on "
        "sentinel2_l1c, sentinel2_l2a, landsat5_tm, naip at 5-90 m: its vote is left out, the map is the "
        "change magnitude alone (change-vector analysis)"
    )


def test_the_training_sensor_is_inside(bundled, shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutsideTrainingWarning)
        assert check_inputs(bundled, "segmentation", [shared_data / S2_CHIP]) is None
        assert check_inputs(bundled, "change", [shared_data / S2_CHIP] * 2) is None


def test_landsat7_is_not_a_trained_change_sensor(bundled, shared_data):
    """Taizhou (Landsat-7 ETM+, 30 m): the size is inside 5-90 m, the sensor was never trained on."""
    pair = [shared_data / "landsat_change_taizhou" / d for d in ("2000TM", "2003TM")]
    with pytest.warns(OutsideTrainingWarning, match=r"landsat7_etm imagery at 30 m"):
        check_inputs(bundled, "change", pair)


def test_strict_refuses_without_warning(bundled, shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutsideTrainingWarning)
        with pytest.raises(InputError, match="--strict refuses input outside the model's training data"):
            check_inputs(bundled, "segmentation", [shared_data / LEVIR], strict=True)


def test_a_folder_without_a_domain_warns_nothing(tiny_system, shared_data):
    assert tiny_system.domain is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutsideTrainingWarning)
        assert check_inputs(tiny_system, "segmentation", [shared_data / LEVIR], strict=True) is None


def test_the_domain_json_is_plain_json(tmp_path):
    save_domain(tmp_path, TrainingDomain({"change": HeadDomain(("naip",), (5.0, 5.0))}))
    data = json.loads((tmp_path / DOMAIN_JSON).read_text())
    assert data["heads"]["change"] == {"sensors": ["naip"], "pixel_size_m": [5.0, 5.0]}
