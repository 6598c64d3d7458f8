"""`rsneo.io.sieve`: a minimum mapping unit merges small regions into their largest neighbour, in strips,
with the same result wherever the strips are cut."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.features import sieve as gdal_sieve
from scipy import ndimage

from rsneo.errors import InputError
from rsneo.io.areas import PixelAreas
from rsneo.io.cog import NODATA_CLASS
from rsneo.io.sieve import MinArea, check_min_area, parse_min_area, read_sieve, sieve_class_map


def write_map(path: Path, classes: np.ndarray, crs=None, transform=None) -> Path:
    """A class map as the engine's partial file is before it becomes a COG (tiled GeoTIFF, nodata 255)."""
    profile = dict(driver="GTiff", width=classes.shape[1], height=classes.shape[0], count=1, dtype="uint8",
                   crs=crs, transform=transform or rasterio.Affine.identity(), nodata=NODATA_CLASS,
                   tiled=True, blockxsize=64, blockysize=64)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(classes, 1)
    return path


@pytest.fixture(scope="module")
def noisy(shared_data) -> tuple[np.ndarray, rasterio.Affine, object]:
    """The Landsat excerpt's red band cut into 3 classes: a real map with thousands of single pixels, and a
    nodata border."""
    with rasterio.open(shared_data / "rasters" / "RGB.byte.tif") as src:
        red, mask = src.read(1), src.dataset_mask() > 0
        classes = np.digitize(red, [60, 110]).astype(np.uint8)
        classes[~mask] = NODATA_CLASS
        return classes, src.transform, src.crs


def regions(classes: np.ndarray) -> list[tuple[int, int, bool]]:
    """(value, pixels, touches another class) of every 4-connected region."""
    out = []
    valid = classes != NODATA_CLASS
    for value in np.unique(classes[valid]):
        labels, n = ndimage.label(classes == value)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        touching = np.zeros(n + 1, bool)
        other = valid & (classes != value)
        for a, b in ((np.s_[1:], np.s_[:-1]), (np.s_[:-1], np.s_[1:])):
            touching[labels[a, :][other[b, :]]] = True
            touching[labels[:, a][other[:, b]]] = True
        out += [(int(value), int(sizes[i]), bool(touching[i])) for i in range(1, n + 1)]
    return out


def test_the_sieve_is_the_same_whatever_the_strips_and_leaves_no_region_below_the_unit(noisy, tmp_path):
    classes, transform, crs = noisy
    classes = classes[:300, :300]  # 3 classes, nodata corner
    before = [r for r in regions(classes) if r[1] == 1]
    assert len(before) > 1000  # salt and pepper: the case the sieve is for
    results = {}
    for strip in (1000, 64, 37, 16):  # one strip, and seams every 64, 37 and 16 rows
        path = write_map(tmp_path / f"s{strip}.tif", classes, crs, transform)
        result = sieve_class_map(path, MinArea(5, "px"), strip_rows=strip)
        with rasterio.open(path) as src:
            results[strip] = src.read(1)
        assert read_sieve(path) == result
    whole = results[1000]
    for strip, out in results.items():
        np.testing.assert_array_equal(out, whole, err_msg=f"strips of {strip} rows")  # integer maps: exact
    assert ((whole == NODATA_CLASS) == (classes == NODATA_CLASS)).all()  # nodata neither grows nor shrinks
    small = [r for r in regions(whole) if r[1] < 5 and r[2]]
    assert not small  # only regions with no other class around may stay below the unit
    assert result.pixels_changed == int((whole != classes).sum()) > 1000
    assert result.regions_before > result.regions_merged > 1000
    assert "minimum mapping unit 5 px" in result.sentence()
    # GDAL's sieve (largest neighbour too) breaks ties between equally large neighbours its own way
    reference = gdal_sieve(classes, 5, mask=classes != NODATA_CLASS, connectivity=4)
    assert (reference == whole).mean() > 0.99


def test_a_minimum_in_hectares_uses_the_true_area_of_each_region(shared_data, tmp_path):
    """On the Sen1Floods11 label (EPSG:4326, about 0.0078 ha a pixel at 42 N) 0.05 ha sieves regions of
    fewer than about 6.4 pixels: 6-pixel regions go, 7-pixel ones stay."""
    with rasterio.open(shared_data / "sen1floods11" / "Labels" / "Spain_7370579_LabelHand.tif") as src:
        label, transform, crs = src.read(1), src.transform, src.crs
    classes = np.where(label < 0, NODATA_CLASS, label).astype(np.uint8)
    path = write_map(tmp_path / "l.tif", classes, crs, transform)
    with rasterio.open(path) as src:
        pixel_ha = float(PixelAreas.of(src).rows(256, 1).mean())
    assert 0.0070 < pixel_ha < 0.0085
    sieve_class_map(path, MinArea(0.05, "ha"), strip_rows=100)
    with rasterio.open(path) as src:
        out = src.read(1)
    sizes = [r[1] for r in regions(out) if r[2]]
    assert min(sizes) * pixel_ha >= 0.05 * (1 - 0.01)  # areas vary by 0.1 % over the chip's rows
    kept = [r[1] for r in regions(classes) if r[1] * pixel_ha >= 0.0505]
    assert len([s for s in sizes if s * pixel_ha >= 0.0505]) >= len(kept) * 0.9  # big regions are kept


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.5", MinArea(0.5, "ha")), ("0.5ha", MinArea(0.5, "ha")), ("4px", MinArea(4, "px")),
     ("4 pixels", MinArea(4, "px")), (0, MinArea(0, "ha")), ("2PX", MinArea(2, "px"))],
)  # fmt: skip
def test_minimum_areas_read_hectares_or_pixels(value, expected):
    assert parse_min_area(value) == expected


@pytest.mark.parametrize("value", ["abc", "-1", "5m", "", "1e"])
def test_a_bad_minimum_area_names_the_option(value):
    with pytest.raises(InputError, match=r"--min-area: expected an area in hectares \(0.5\) or pixels"):
        parse_min_area(value)


def test_hectares_need_a_georeference():
    check_min_area(MinArea(4, "px"), pixel_units=True)
    check_min_area(MinArea(0.5, "ha"), pixel_units=False)
    with pytest.raises(InputError, match=r"--min-area 0.5 ha: the input has no georeference.*\(e.g. 4px\)"):
        check_min_area(MinArea(0.5, "ha"), pixel_units=True)
