"""The sensor registry: the built-in sensors, band lookup, groups, and sensors added from YAML."""

from __future__ import annotations

import json

import pytest

from rsneo.cli import run_app
from rsneo.errors import InputError
from rsneo.sensors import get_sensor, list_sensors, load_sensor_yaml, register_sensor

# Central wavelengths from /work/shared/data/README.md (nm).
S2_NM = {"B01": 443, "B02": 490, "B03": 560, "B04": 665, "B05": 705, "B06": 740, "B07": 783, "B08": 842,
         "B8A": 865, "B09": 945, "B10": 1375, "B11": 1610, "B12": 2190}  # fmt: skip


def test_builtin_sensors_have_the_issue_band_counts():
    counts = {s.name: len(s.bands) for s in list_sensors()}
    assert counts["sentinel2_l1c"] == 13 and counts["sentinel2_l2a"] == 12
    assert counts["sentinel1_grd"] == 4 and counts["naip"] == 4 and counts["rgb"] == 3
    assert counts["planetscope4"] == 4 and counts["planetscope8"] == 8
    assert {"landsat5_tm", "landsat7_etm", "landsat8_oli"} <= set(counts)


def test_sentinel2_wavelengths_match_the_reference_table():
    s2 = get_sensor("sentinel2_l1c")
    for name, nm in S2_NM.items():
        assert s2.band(name).wavelength == pytest.approx(nm / 1000)
    assert "B10" not in get_sensor("sentinel2_l2a").band_names


def test_band_lookup_by_alias_and_sar_carries_the_c_band_wavelength():
    s2 = get_sensor("S2_L2A")
    assert s2.band("b8").name == "B08" and s2.band("B8A").common_name == "nir08"
    vh = get_sensor("sentinel1_grd").band("vh")
    assert vh.common_name == "vh" and vh.wavelength == 55465.0


def test_groups_keep_rgb_in_red_green_blue_order():
    s2 = get_sensor("sentinel2_l2a")
    groups = s2.groups_for(s2.select(["B02", "B03", "B04", "B08"]))
    assert [b.name for b in groups["rgb"]] == ["B04", "B03", "B02"]
    assert [b.name for b in groups["nir"]] == ["B08"]
    assert list(groups) == ["rgb", "nir"]


def test_unknown_band_name_is_named_with_the_choices():
    with pytest.raises(
        InputError, match=r"unknown band name 'B13' for sensor sentinel2_l2a: expected one of B01"
    ):
        get_sensor("sentinel2_l2a").band("B13")


def test_unknown_sensor_lists_known_ones():
    with pytest.raises(InputError, match="unknown sensor 'modis'.*sentinel2_l1c"):
        get_sensor("modis")


USER_YAML = """
name: hyper_test
title: A user's 2-band camera
groups: {pair: [b550, b850]}
bands:
  - {name: b550, common_name: green, wavelength: 0.55, resolution: 2, mean: 100, std: 20}
  - {name: b850, common_name: nir, wavelength: 0.85, resolution: 2, mean: 150, std: 30}
"""


def test_user_sensor_from_yaml_file_and_from_env(tmp_path, monkeypatch):
    path = tmp_path / "hyper.yaml"
    path.write_text(USER_YAML)
    monkeypatch.setenv("RSNEO_SENSORS", str(tmp_path))
    sensor = get_sensor("hyper_test")
    assert sensor.band("b850").group == "pair" and sensor.band("b550").mean == 100
    assert register_sensor(path).name == "hyper_test"


def test_bad_sensor_yaml_names_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nbands:\n  - {name: b1, wavelength: 0.5, mean: 1}\n")
    with pytest.raises(InputError, match=r"bad.yaml: band 1 \(b1\) is missing \['std'\]"):
        load_sensor_yaml(path)


def test_cli_sensors_lists_and_prints_json(capsys):
    assert run_app(["sensors"]) == 0
    capsys.readouterr()
    assert run_app(["sensors", "sentinel1_grd", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["command"] == "sensors" and document["ok"]
    data = document["sensors"]
    assert [b["name"] for b in data[0]["bands"]] == ["VV", "VH", "HH", "HV"]
    assert run_app(["sensors", "nope"]) == 2
