"""The new-building map: two very-high-resolution optical dates -> P(no change), P(new building).

The bundled model never saw a building (nothing it may ship shows buildings at sub-metre resolution), so this
mode does not ask it. It uses the morphological building index (MBI; Huang and Zhang 2011): a roof is a bright
patch that is wider than a few metres and shorter than a few tens of metres in every direction, so it survives
an opening by a short line and vanishes under an opening by a long one, whatever the line's direction. Roads
(long in one direction), fields and lawns (wide in all) score low. A new building is a pixel where the index
rose clearly and the later date's index reads as a building (after Huang, Zhang and Zhu 2014). Both cuts are
Otsu's, measured on the whole scene, as CVA + Otsu takes its cut; the scales are in metres, so the pixel size
must be known: from the georeference, or `--pixel-size` for an image without one.

Only construction is mapped: a demolished building is not (its index falls, but so does a roof repainted or
shaded). Built for sub-metre to 2 m imagery with red, green and blue bands; coarser pixels are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio

from rsneo.baselines import otsu_threshold
from rsneo.data.frames import BandLayout
from rsneo.errors import InputError
from rsneo.io.cog import ClassLegend
from rsneo.io.windows import RasterWindows
from rsneo.predict.change_classes import from_to_classifier
from rsneo.predict.inputs import Inputs
from rsneo.predict.sliding_window import MapSpec

SHORTEST_M, LONGEST_M = 2.5, 29.5  # a garden shed's side to a warehouse's: the roofs the index looks for
INDEX_BLUR_M, RISE_BLUR_M = 0.75, 1.0  # Gaussian sigmas: damp texture and one-pixel misregistration
COARSEST_M = 2.0  # above this, a house is a pixel or two and the index cannot tell its shape
SAMPLE = 512  # scene cuts: whole rasters up to 2 x SAMPLE a side, else 4 x 4 native-resolution windows
BUILDING_NAMES = ("no change", "new building")


def pixel_size_of(dataset: rasterio.io.DatasetReaderBase, given: float | None) -> float:
    """The ground size of one pixel in metres: `given`, else from a projected georeference."""
    if given is not None:
        if not given > 0:
            raise InputError(f"--pixel-size: expected a positive number of metres, got {given}")
        size = float(given)
    elif dataset.crs is None or dataset.transform.is_identity:
        raise InputError(
            f"{dataset.name}: no georeference, so the pixel size is unknown; buildings are found by their "
            "size in metres: pass --pixel-size METRES (0.5 for LEVIR-CD crops)"
        )
    elif not dataset.crs.is_projected:
        raise InputError(
            f"{dataset.name}: the CRS {dataset.crs} is not projected (degrees); pass --pixel-size METRES"
        )
    else:
        metres = dataset.crs.linear_units_factor[1]
        size = float(np.sqrt(abs(dataset.transform.a * dataset.transform.e)) * metres)
    if size > COARSEST_M:
        raise InputError(
            f"{dataset.name}: pixels of {size:g} m are too coarse for --of buildings (at most "
            f"{COARSEST_M:g} m): a house would be a pixel or two; plain `rsneo change` maps land-cover change"
        )
    return size


def visible_bands(layout: BandLayout, path: str) -> list[int]:
    """Indices of red, green and blue in the layout: the brightness the index is built on."""
    keys = list(layout.keys)
    missing = [k for k in ("red", "green", "blue") if k not in keys]
    if missing:
        raise InputError(
            f"{path}: --of buildings needs red, green and blue bands; {', '.join(missing)} not found among "
            f"{', '.join(layout.band_names)} (name them with --bands, e.g. --bands red,green,blue)"
        )
    return [keys.index(k) for k in ("red", "green", "blue")]


def _line(length: int, direction: int) -> np.ndarray:
    """A flat line structuring element of `length` pixels: 0 east-west, 1 north-south, 2 and 3 diagonals."""
    if direction == 0:
        return np.ones((1, length), bool)
    if direction == 1:
        return np.ones((length, 1), bool)
    diagonal = np.eye(length, dtype=bool)
    return diagonal if direction == 2 else diagonal[::-1]


def _fill_invalid(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Invalid pixels take their nearest valid pixel's value, so no bright patch appears at a nodata edge."""
    from scipy import ndimage

    if valid.all() or not valid.any():
        return values
    nearest = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return values[tuple(nearest)]


def building_index(brightness: np.ndarray, valid: np.ndarray, pixel_size: float) -> np.ndarray:
    """(H, W) brightness (max of R, G, B), valid mask, metres per pixel -> (H, W) building index (MBI).

    For each of four directions, the opening by the shortest line minus the opening by the longest: what is
    bright at the scale of a roof in that direction (the sum of Huang and Zhang's differential profile, which
    telescopes because openings by nested lines are ordered); then the mean over directions, blurred."""
    from scipy import ndimage

    shortest = max(3, round(SHORTEST_M / pixel_size))
    longest = max(shortest + 2, round(LONGEST_M / pixel_size))
    image = _fill_invalid(brightness.astype(np.float64), valid)
    index = np.zeros_like(image)
    for direction in range(4):
        short = ndimage.grey_opening(image, footprint=_line(shortest, direction))
        long = ndimage.grey_opening(image, footprint=_line(longest, direction))
        index += short - long
    return ndimage.gaussian_filter(index / 4, INDEX_BLUR_M / pixel_size)


def _indices_and_rise(
    pixels: np.ndarray, valid: np.ndarray, rgb: list[int], pixel_size: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dates, bands, H, W), (H, W) -> first and last date's index and the blurred rise between them."""
    from scipy import ndimage

    first, last = (building_index(pixels[d, rgb].max(0), valid, pixel_size) for d in (0, -1))
    return first, last, ndimage.gaussian_filter(last - first, RISE_BLUR_M / pixel_size)


@dataclass
class SceneBuildings:
    """The scene's two cuts: the index above which a pixel reads as a building (Otsu over both dates) and the
    rise above which the index rose clearly (Otsu of the rise)."""

    rgb: list[int]
    pixel_size: float
    building_cut: float
    rise_cut: float

    @classmethod
    def measure(cls, windows: RasterWindows, rgb: list[int], pixel_size: float) -> SceneBuildings:
        height, width = windows.height, windows.width
        if max(height, width) <= 2 * SAMPLE:
            spots, size = [(0, 0)], max(height, width)
        else:
            rows = np.linspace(0, max(height - SAMPLE, 0), 4).astype(int)
            cols = np.linspace(0, max(width - SAMPLE, 0), 4).astype(int)
            spots, size = [(int(r), int(c)) for r in rows for c in cols], SAMPLE
        indices, rises = [], []
        for row, col in spots:
            pixels, valid = windows.read(row, col, size)
            first, last, rise = _indices_and_rise(pixels, valid, rgb, pixel_size)
            indices += [first[valid], last[valid]]
            rises.append(rise[valid])
        indices, rises = np.concatenate(indices), np.concatenate(rises)
        if rises.size < 2:
            raise InputError(f"{windows.datasets[0].name}: no pixel is valid on both dates")
        return cls(rgb, pixel_size, otsu_threshold(indices), otsu_threshold(rises))


class BuildingChangePredictor:
    """Windows of aligned dates (B, dates, bands, S, S) -> [P(no change), P(new building)].

    P(new building) = sigmoid(4 x the smaller of the two margins, each relative to its cut), so it is above
    0.5 exactly where both the rise and the later index pass their cuts."""

    def __init__(self, scene: SceneBuildings) -> None:
        self.scene = scene

    def __call__(self, pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
        scene, out = self.scene, []
        for window, mask in zip(pixels, valid, strict=True):
            _, last, rise = _indices_and_rise(window, mask, scene.rgb, scene.pixel_size)
            margin = np.minimum(
                (rise - scene.rise_cut) / max(abs(scene.rise_cut), 1e-6),
                (last - scene.building_cut) / max(abs(scene.building_cut), 1e-6),
            )
            p = 1.0 / (1.0 + np.exp(-4.0 * np.clip(margin, -10, 10)))
            out.append(np.stack([1.0 - p, p]))
        return np.stack(out).astype(np.float32)


def building_map(inputs: Inputs, pixel_size: float | None = None) -> MapSpec:
    """The new-building map of aligned dates, its cuts measured on the whole scene (`pixel_size` metres for
    images without georeference); `rsneo change --of buildings` and `rsneo ask` ("are there new
    buildings?") both map with it. Every date needs red, green and blue bands."""
    for layout, raster in zip(inputs.layouts, inputs.rasters, strict=True):
        rgb = visible_bands(layout, str(raster))  # every date has them; they are in the same order
    size = pixel_size_of(inputs.datasets[0], pixel_size)
    scene = SceneBuildings.measure(RasterWindows(inputs.datasets, stack=True), rgb, size)
    legend = ClassLegend.from_names(list(BUILDING_NAMES))
    calibration = (scene.building_cut, scene.rise_cut)
    return MapSpec(BuildingChangePredictor(scene), legend, from_to_classifier(None), calibration)
