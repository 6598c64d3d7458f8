"""A minimum mapping unit for class maps: regions smaller than it are merged into a neighbour (a sieve), in
strips, so that memory stays flat and the result does not depend on where the strips are cut.

A region is a 4-connected set of pixels of one class, as the polygons are traced (`rsneo.io.vector`). Its size
is its area in hectares (`rsneo.io.areas.PixelAreas`: true areas in any CRS) or its pixel count. Every region
smaller than the minimum takes the class of its largest neighbour (the smallest first, sizes updated as they
merge), as GDAL's sieve does; nodata pixels are never changed and are no one's neighbour, so a region that
touches only nodata stays. Two passes over the map: the first labels each strip, joins the regions that
continue across the strip seams (union-find over the seam rows) and records which regions touch; the second
labels each strip again, identically, and writes the merged classes.
"""

from __future__ import annotations

import heapq
import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from rsneo.errors import InputError
from rsneo.io.areas import PixelAreas
from rsneo.io.cog import NODATA_CLASS, gdal_env
from rsneo.io.dataset import open_raster

SIEVE_TAG = "rsneo_min_mapping_unit"  # a sieved class map says so in its metadata


@dataclass(frozen=True)
class MinArea:
    """A minimum mapping unit: `value` hectares (`unit` "ha") or pixels ("px"); 0 keeps every region."""

    value: float
    unit: str

    def __str__(self) -> str:
        return f"{self.value:g} px" if self.unit == "px" else f"{self.value:g} ha"

    @property
    def active(self) -> bool:
        return self.value > 0


DEFAULT_MIN_AREA = "2px"  # removes single-pixel regions, nothing else
_AMOUNT = re.compile(r"^\s*(?P<v>[0-9]*\.?[0-9]+(?:e[-+]?\d+)?)\s*(?P<u>[a-z]+)?\s*$", re.IGNORECASE)


def amount(value: str | float | int, option: str, other: str) -> tuple[float, str]:
    """A non-negative number with an optional unit: (value, "px") for a px suffix, else (value, `other`) (the
    option's own unit: "ha" for an area, "map" for a distance in map units); a bad value is an InputError."""
    match = _AMOUNT.match(str(value))
    suffix = (match.group("u") or other).lower() if match else ""
    if match is None or suffix not in ("px", "pixel", "pixels", other):
        what = "an area in hectares (0.5)" if other == "ha" else "a distance in map units (20)"
        raise InputError(f"{option}: expected {what} or pixels with a px suffix (4px), got {value!r}")
    return float(match.group("v")), "px" if suffix.startswith("p") else other


def parse_min_area(value: MinArea | str | float | int, option: str = "--min-area") -> MinArea:
    """ "0.5" or "0.5ha" -> 0.5 hectares; "4px" -> 4 pixels; 0 -> no sieve. A bad value is an InputError."""
    return value if isinstance(value, MinArea) else MinArea(*amount(value, option, "ha"))


def check_min_area(min_area: MinArea, pixel_units: bool, option: str = "--min-area") -> None:
    """Hectares need a georeference: a map in pixel units takes pixels (checked before any work)."""
    if pixel_units and min_area.active and min_area.unit == "ha":
        raise InputError(
            f"{option} {min_area}: the input has no georeference, so its map has no hectares; give the "
            "minimum in pixels instead (e.g. 4px)"
        )


@dataclass
class SieveResult:
    """What a sieve changed: regions merged into a neighbour and their pixels (or hectares)."""

    min_area: str
    regions_before: int
    regions_merged: int
    pixels_changed: int

    def sentence(self) -> str:
        return (
            f"minimum mapping unit {self.min_area}: {self.regions_merged:,} of {self.regions_before:,} "
            f"regions merged into a neighbour ({self.pixels_changed:,} pixels)"
        )


def _strips(height: int, strip_rows: int) -> Iterator[tuple[int, int]]:
    for top in range(0, height, strip_rows):
        yield top, min(strip_rows, height - top)


def _label(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) class values -> (labels (rows, cols) int64, -1 on nodata; value of each label).

    4-connected regions of one value, labelled value by value in increasing order (deterministic: the second
    pass finds the same labels)."""
    labels = np.full(block.shape, -1, np.int64)
    values = []
    count = 0
    for value in np.unique(block[block != NODATA_CLASS]):
        lab, n = ndimage.label(block == value)  # 4-connected (the default cross structure)
        inside = lab > 0
        labels[inside] = lab[inside] - 1 + count
        values.append(np.full(n, value, np.int64))
        count += n
    return labels, (np.concatenate(values) if values else np.zeros(0, np.int64))


def _touching(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(pairs, 2) distinct label pairs of neighbouring pixels in `a` and `b` (same shape), both valid."""
    keep = (a >= 0) & (b >= 0) & (a != b)
    pairs = np.stack([np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])], 1)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def sieve_class_map(path: Path, min_area: MinArea, strip_rows: int = 512) -> SieveResult:
    """Merge every region of the uint8 class map at `path` smaller than `min_area` into its largest neighbour,
    in place, strip by strip; the map's tags record the result."""
    path = Path(path)
    with gdal_env(), open_raster(path) as src:
        areas = PixelAreas.of(src)
        check_min_area(min_area, areas.unit == "px")
        width, height = src.width, src.height
        values, sizes, firsts, seams, touch, offsets = [], [], [], [], [], []
        count, previous, previous_row = 0, None, None
        for top, rows in _strips(height, strip_rows):
            block = src.read(1, window=Window(0, top, width, rows))
            labels, label_values = _label(block)
            labels[labels >= 0] += count
            weights = np.ones(1) if min_area.unit == "px" else areas.rows(top, rows)
            weights = np.broadcast_to(weights, block.shape)
            valid = labels >= 0
            sizes.append(np.bincount(labels[valid] - count, weights[valid], minlength=len(label_values)))
            flat = labels.ravel()
            _, at = np.unique(flat, return_index=True)  # raster-order position of each label's first pixel
            firsts.append(top * width + at[-len(label_values) :] if len(label_values) else at[:0])
            values.append(label_values)
            touch += [_touching(labels[:, 1:], labels[:, :-1]), _touching(labels[1:], labels[:-1])]
            if previous is not None:  # the seam: one region where the values agree, neighbours where not
                same = (previous >= 0) & (labels[0] >= 0) & (previous_row == block[0])
                seams.append(np.stack([previous[same], labels[0][same]], 1))
                touch.append(_touching(np.where(same, -1, previous), np.where(same, -1, labels[0])))
            offsets.append(count)
            count += len(label_values)
            previous, previous_row = labels[-1], block[-1]
    values_all = np.concatenate(values) if values else np.zeros(0, np.int64)
    region = _canonical(
        _join_seams(count, seams), np.concatenate(firsts) if firsts else np.zeros(0, np.int64)
    )
    n_regions = int(region.max()) + 1 if count else 0
    region_value = np.zeros(n_regions, np.int64)
    region_value[region] = values_all
    region_size = np.bincount(region, np.concatenate(sizes) if sizes else None, minlength=n_regions)
    pairs = np.concatenate(touch) if touch else np.zeros((0, 2), np.int64)
    final, merged = _merge_small(region_value, region_size, region[pairs] if len(pairs) else pairs, min_area)
    label_final = final[region]  # the class of every first-pass label
    changed = 0
    with gdal_env(), warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "r+") as dst:
            for (top, rows), offset in zip(_strips(height, strip_rows), offsets, strict=True):
                window = Window(0, top, width, rows)
                block = dst.read(1, window=window)
                labels, _ = _label(block)
                valid = labels >= 0
                out = block.copy()
                out[valid] = label_final[labels[valid] + offset]
                changed += int((out != block).sum())
                dst.write(out, 1, window=window)
            result = SieveResult(str(min_area), n_regions, merged, changed)
            dst.update_tags(**{SIEVE_TAG: json.dumps(result.__dict__)})
    return result


def _join_seams(count: int, seams: list[np.ndarray]) -> np.ndarray:
    """Region id of every first-pass label: labels joined across the strip seams are one region."""
    if not count:
        return np.zeros(0, np.int64)
    edges = np.concatenate(seams) if seams else np.zeros((0, 2), np.int64)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count))
    _, region = connected_components(graph, directed=False)
    return region.astype(np.int64)


def _canonical(region: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Region ids renumbered in the raster order of each region's first pixel: the same regions get the same
    ids however the strips are cut, so ties in the sieve are broken alike."""
    if not len(region):
        return region
    start = np.full(int(region.max()) + 1, np.iinfo(np.int64).max)
    np.minimum.at(start, region, first)
    rank = np.empty(len(start), np.int64)
    rank[np.argsort(start)] = np.arange(len(start))
    return rank[region]


def _merge_small(
    value: np.ndarray, size: np.ndarray, pairs: np.ndarray, min_area: MinArea
) -> tuple[np.ndarray, int]:
    """The class of every region after merging each region smaller than `min_area` into its largest
    neighbour (smallest regions first, sizes and neighbours updated as regions merge); and how many merged.

    `pairs` (n, 2) lists neighbouring regions. A region with no neighbour (only nodata around it) stays."""
    value = value.copy()
    if not min_area.active or not len(value):
        return value, 0
    size = size.astype(np.float64).copy()
    is_small = size < min_area.value - 1e-9
    # neighbours are needed of small regions only (a region only grows, so a big one is never sieved)
    neighbours: dict[int, set[int]] = {int(i): set() for i in np.flatnonzero(is_small)}
    pairs = pairs[(pairs[:, 0] != pairs[:, 1]) & (is_small[pairs[:, 0]] | is_small[pairs[:, 1]])]
    for a, b in pairs.tolist():
        if a in neighbours:
            neighbours[a].add(b)
        if b in neighbours:
            neighbours[b].add(a)
    parent = np.arange(len(value))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    small = [(size[i], i) for i in neighbours]
    heapq.heapify(small)
    merged = 0
    while small:
        s, i = heapq.heappop(small)
        if root(i) != i or s != size[i]:
            continue  # merged already, or grown since it was queued
        around = {root(j) for j in neighbours[i]} - {i}
        if not around:
            continue
        into = max(around, key=lambda j: (size[j], -j))
        parent[i] = into
        size[into] += size[i]
        merged += 1
        gone = neighbours.pop(i)
        if size[into] < min_area.value - 1e-9:  # still small: it will be sieved with its new neighbours
            neighbours[into] = (neighbours[into] | gone) - {into, i}
            heapq.heappush(small, (size[into], into))
    final = np.array([value[root(i)] for i in range(len(value))], np.int64)
    return final, merged


def read_sieve(path: Path) -> SieveResult | None:
    """The sieve a class map records (None: not sieved)."""
    with open_raster(path) as src:
        text = src.tags().get(SIEVE_TAG)
    return SieveResult(**json.loads(text)) if text else None
