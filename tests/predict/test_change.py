"""`rsneo change`: input outside the change head's training imagery warned about, noted in the report,
refused under strict; the head's vote left out there, and the same map measured by `ask`."""

from __future__ import annotations

import html
import warnings

import pytest

from rsneo.errors import InputError, OutsideTrainingWarning
from rsneo.io.read import PixelUnitsWarning
from rsneo.predict.buildings import map_new_buildings
from rsneo.predict.change import detect_change
from rsneo.predict.requests import AskRequest, BuildingsRequest, ChangeRequest

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
        out = detect_change(bundled, ChangeRequest(rasters=pair, out=tmp_path))
    expected = (
        f"{pair[0]}, {pair[1]}: rgb imagery at an unknown pixel size; the change head was trained on "
        "sentinel2_l1c, sentinel2_l2a, landsat5_tm, naip at 5-90 m: its vote is left out, the map is the "
        "change magnitude alone (change-vector analysis)"
    )
    assert [str(w.message) for w in caught if w.category is OutsideTrainingWarning] == [expected]
    assert out.notes == (expected,)
    report = html.unescape(out.report.read_text())
    assert f"Outside the model's training data: {expected}." in report


def test_strict_refuses_an_rgb_pair_and_writes_nothing(bundled, shared_data, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match="--strict refuses input outside"):
        detect_change(bundled, ChangeRequest(rasters=_levir(shared_data), out=out, strict=True))
    assert not out.exists()


def test_new_buildings_do_not_use_the_model_and_are_not_warned_about(bundled, shared_data, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PixelUnitsWarning)  # the PNG pair has no georeference, as said above
        warnings.simplefilter("error", OutsideTrainingWarning)
        pair = _levir(shared_data)
        out = map_new_buildings(bundled, BuildingsRequest(rasters=pair, out=tmp_path, pixel_size=0.5))
    assert out.notes == ()


def test_outside_its_imagery_the_head_does_not_vote(bundled, shared_data, tmp_path):
    """Taizhou is Landsat-7, a sensor the bundled change head never saw: its vote is left out and the map is
    the blurred change magnitude cut by Otsu (CVA + Otsu on the blurred magnitude, scipy's filter as the
    reference), the report says so, and `ask` measures the same map. A copy of the folder whose domain lists
    Landsat-7 gets the head's vote back, and a different map."""
    import shutil

    import rasterio
    from scipy import ndimage

    from rsneo.baselines import change_vector_magnitude, otsu_threshold, standardise_bands
    from rsneo.heads.change import MAGNITUDE_SIGMA
    from rsneo.heads.domain import TrainingDomain, load_domain, save_domain
    from rsneo.heads.system import BUNDLED_MODEL, load_system
    from rsneo.predict.ask import ask

    pair = [shared_data / "landsat_change_taizhou" / name for name in ("2000TM", "2003TM")]
    with pytest.warns(OutsideTrainingWarning, match="landsat7_etm imagery at 30 m"):
        out = detect_change(bundled, ChangeRequest(rasters=pair, out=tmp_path / "outside"))
    with rasterio.open(pair[0]) as a, rasterio.open(pair[1]) as b:
        magnitude = change_vector_magnitude(standardise_bands(a.read()), standardise_bands(b.read()))
    blurred = ndimage.gaussian_filter(magnitude, MAGNITUDE_SIGMA, mode="mirror", truncate=2.0)
    expected = blurred > otsu_threshold(blurred.ravel())
    with rasterio.open(out.cog) as src:
        changed = src.read(1) == 1
    # the same map but for the window seams and the raster's edge (where the blur averages the valid pixels
    # of a window, scipy mirrors the whole raster): 20 of 160,000 pixels today; the head's vote moves >1 %
    assert (changed != expected).mean() < 1e-3 and 0.05 < expected.mean() < 0.5
    assert "so its vote is left out" in html.unescape(out.report.read_text())
    with pytest.warns(OutsideTrainingWarning):
        answer = ask(bundled, AskRequest(rasters=pair, question="How much of the area changed?"))
    assert answer.value == pytest.approx(100 * out.changed_area / out.compared_area, abs=1e-6)

    folder = tmp_path / "model"
    shutil.copytree(BUNDLED_MODEL, folder)
    domain = load_domain(folder)
    change = domain.heads["change"].including("landsat7_etm", 30.0)
    save_domain(folder, TrainingDomain({**domain.heads, "change": change}, domain.note))
    widened = load_system(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutsideTrainingWarning)  # inside now: nothing to warn about
        voted = detect_change(widened, ChangeRequest(rasters=pair, out=tmp_path / "inside"))
    with rasterio.open(voted.cog) as src:
        assert (src.read(1) == 1).mean() > changed.mean() + 0.01  # the head's vote adds change here
    assert "combines the change head's vote" in html.unescape(voted.report.read_text())
