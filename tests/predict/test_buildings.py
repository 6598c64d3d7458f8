"""`rsneo change --of buildings`: the whole command on real LEVIR-CD building-change pairs (test data:
nothing is fit on them; the cuts are Otsu's on each pair)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import rasterio

from rsneo.baselines import binary_scores, cva_otsu
from rsneo.errors import InputError
from rsneo.predict.buildings import map_new_buildings
from rsneo.predict.maps.buildings import BUILDING_NAMES
from rsneo.predict.requests import BuildingsRequest


def _read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return src.read()


def _levir(shared_data, name):
    levir = shared_data / "levir_cd"
    return [levir / "A" / name, levir / "B" / name], _read(levir / "label" / name)[0] > 0


@pytest.mark.parametrize("name", ["test_121_0768_0256.png", "train_36_0512_0512.png"])
def test_new_buildings_beat_cva_and_the_all_changed_map(shared_data, tiny_system, tmp_path, name):
    """On LEVIR-CD pairs where whole suburbs were built (roads and lawns change as much as the roofs, and only
    roofs are labelled), the new-building map's F1 beats CVA + Otsu and marking everything changed (bundled
    model: 0.411 / 0.464 against at most 0.327 / 0.297, benchmarks/change.py); the tiny model is enough since
    the mode does not use it. The report speaks of new buildings, the legend names them."""

    rasters, truth = _levir(shared_data, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = map_new_buildings(tiny_system, BuildingsRequest(rasters=rasters, out=tmp_path, pixel_size=0.5))
    predicted = _read(out.cog)[0] == 1
    scores = binary_scores(predicted, truth, ~truth)
    before, after = _read(rasters[0]), _read(rasters[1])
    cva = binary_scores(cva_otsu(before, after), truth, ~truth)["f1"]
    everything = binary_scores(np.ones_like(truth), truth, ~truth)["f1"]
    assert scores["f1"] > max(cva, everything) + 0.05
    assert scores["predicted_share"] < 2 * truth.mean()  # not a disguised all-changed map
    assert out.area_unit == "px" and out.changed_area == predicted.sum()
    assert out.summary.startswith("New buildings cover about")
    report = out.report.read_text()
    assert "morphological building index" in report and "Demolished buildings are not mapped" in report
    assert "with the morphological building index (no model)" in report and "the model in" not in report
    assert f"Dates: A/{name}, B/{name}" in report  # the folder tells two dates of one name apart
    with rasterio.open(out.cog) as src:
        assert json.loads(src.tags()["class_names"]) == list(BUILDING_NAMES)


def test_building_mode_refuses_what_it_cannot_measure(shared_data, tiny_system, tmp_path):
    """Clear errors: no pixel size for a PNG pair, pixels too coarse (NAIP here is about 5 m), radar (no
    red, green, blue)."""

    rasters, _ = _levir(shared_data, "test_7_0256_0512.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match=r"no georeference.*--pixel-size METRES"):
            map_new_buildings(tiny_system, BuildingsRequest(rasters=rasters, out=tmp_path / "a"))
        naip = sorted((shared_data / "timeseries" / "naip_m4709963").glob("*.tif"))[:2]
        with pytest.raises(InputError, match=r"pixels of 5(\.\d+)? m are too coarse"):
            map_new_buildings(tiny_system, BuildingsRequest(rasters=naip, out=tmp_path / "b"))
        radar = shared_data / "sen1floods11" / "S1" / "Spain_7370579_S1Hand.tif"
        with pytest.raises(InputError, match=r"S1Hand.tif: --of buildings needs red, green and blue bands"):
            map_new_buildings(
                tiny_system, BuildingsRequest(rasters=[radar, radar], out=tmp_path / "c", pixel_size=0.5)
            )
    assert not [path for d in "abc" for path in (tmp_path / d).glob("change*")]  # nothing half-written


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--of", "roads", "--pixel-size", "0.5"], "--of: expected buildings (the one kind of change"),
        (
            ["--of", "buildings", "--classes", "water"],
            "--of buildings maps new buildings; it cannot be combined",
        ),
    ],
)
def test_the_command_refuses_another_kind_of_change_and_from_to_classes(
    shared_data, tiny_model_dir, tmp_path, capsys, options, message
):
    from rsneo.cli.app import run_app

    rasters, _ = _levir(shared_data, "test_7_0256_0512.png")
    argv = ["change", *map(str, rasters), "--out", str(tmp_path / "out"), "--model", str(tiny_model_dir)]
    assert run_app([*argv, *options]) == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "out").exists()


def test_a_large_georeferenced_pair_is_cut_on_sampled_windows_and_mapped_window_by_window(
    shared_data, tiny_system, tmp_path
):
    """A LEVIR-CD pair mirrored 5 x 5 (1,280 px a side, written as GeoTIFFs at 0.5 m in UTM): the cuts come
    from 16 native-resolution sample windows, the map from overlapping windows; its F1 against the mirrored
    reference stays within 0.05 of the single crop's, and the areas are in hectares."""
    from rasterio.transform import from_origin

    rasters, truth = _levir(shared_data, "train_36_0512_0512.png")

    def mirrored(a: np.ndarray) -> np.ndarray:
        row = np.concatenate([a, a[..., ::-1], a, a[..., ::-1], a], axis=-1)
        return np.concatenate([row, row[..., ::-1, :], row, row[..., ::-1, :], row], axis=-2)

    paths = []
    for i, path in enumerate(rasters):
        data = mirrored(_read(path))
        out = tmp_path / f"date{i}.tif"
        profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=3, dtype="uint8",
                       crs="EPSG:32615", transform=from_origin(500_000, 3_300_000, 0.5, 0.5))  # fmt: skip
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(data)
            for b, name in enumerate(("red", "green", "blue"), start=1):
                dst.set_band_description(b, name)
        paths.append(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = map_new_buildings(
            tiny_system, BuildingsRequest(rasters=rasters, out=tmp_path / "small", pixel_size=0.5)
        )
        large = map_new_buildings(
            tiny_system, BuildingsRequest(rasters=paths, out=tmp_path / "large", sensor="rgb")
        )
    big_truth = mirrored(truth)
    f1_small = binary_scores(_read(small.cog)[0] == 1, truth, ~truth)["f1"]
    f1_large = binary_scores(_read(large.cog)[0] == 1, big_truth, ~big_truth)["f1"]
    hectares = 1280 * 1280 * 0.5 * 0.5 / 1e4
    assert large.area_unit == "ha" and large.compared_area == pytest.approx(hectares, rel=1e-3)
    assert abs(f1_large - f1_small) < 0.05 and f1_large > 0.35
