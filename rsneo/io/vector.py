"""Class maps to GeoPackage polygons with true areas, strip by strip so memory stays flat.

Polygons are traced per strip of `strip_rows` rows in pixel coordinates (integers, so pieces that meet at a
strip seam share their edges exactly), pieces of one class that touch across a seam are merged, and each
finished region is written once, as one polygon with its whole area. A region's area is the sum of its pixels'
areas (`rsneo.io.areas.PixelAreas`: ellipsoidal hectares in any CRS, integer pixel counts without one),
obtained exactly from its outline with Green's theorem over a summed-area table of the pixel areas, so the
polygons' areas add up to the class totals of `class_areas`.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from rsneo import atomic
from rsneo.io.areas import PixelAreas
from rsneo.io.cog import NODATA_CLASS, ClassLegend, gdal_env, hidden_path, read_legend
from rsneo.io.dataset import open_raster
from rsneo.io.sieve import amount, read_sieve

LAYER = "classes"
WRITE_BATCH = 20_000  # polygons held before an append to the GeoPackage


def _as_unit(value: float, unit: str) -> float | int:
    """Pixel counts are integers; hectares stay floats."""
    return int(round(value)) if unit == "px" else float(value)


def class_areas(
    cog_path: Path, legend: ClassLegend | None = None, strip_rows: int = 1024
) -> dict[str, float]:
    """Area per class name of a class-map COG (hectares, or integer pixel counts without a CRS).

    The key "" holds the area of all valid (not nodata) pixels.
    """
    legend = legend or read_legend(cog_path)
    totals = np.zeros(256)
    with gdal_env(), open_raster(cog_path) as src:
        areas = PixelAreas.of(src)
        for top in range(0, src.height, strip_rows):
            block = src.read(1, window=Window(0, top, src.width, min(strip_rows, src.height - top)))
            totals += areas.class_totals(block, top)
    out = {name: _as_unit(totals[i], areas.unit) for i, name in enumerate(legend.names)}
    out[""] = _as_unit(totals[:NODATA_CLASS].sum(), areas.unit)
    return out


def area_unit(cog_path: Path) -> str:
    """ "ha" for a class map with a CRS, "px" (pixel counts) without one."""
    with open_raster(cog_path) as src:
        return "px" if src.crs is None else "ha"


@dataclass
class _Region:
    """A connected region of one class, possibly still growing into the next strip."""

    class_id: int
    pieces: list = field(default_factory=list)  # shapely polygons in pixel coordinates
    area: float = 0.0
    pixels: int = 0


def _summed_table(weights: np.ndarray) -> np.ndarray:
    """(rows + 1, cols + 1) table[y, x] = sum of the weights above and left of pixel corner (x, y)."""
    table = np.zeros((weights.shape[0] + 1, weights.shape[1] + 1))
    table[1:, 1:] = weights.cumsum(0).cumsum(1)
    return table


@dataclass
class _Pieces:
    """The 4-connected regions of one strip: class values, polygons (pixel coordinates), areas, pixel counts,
    and which piece runs along each column of the strip's top and bottom edge (-1: none)."""

    values: np.ndarray
    polygons: np.ndarray
    areas: np.ndarray
    pixels: np.ndarray
    top_owner: np.ndarray
    bottom_owner: np.ndarray


def _strip_pieces(block: np.ndarray, top: int, valid: np.ndarray, table: np.ndarray) -> _Pieces:
    """Trace one strip and measure every piece at once.

    A piece's area is the sum of its pixels' weights, by Green's theorem over the summed-area table
    `table`: along a ring only vertical edges count, each table[y1, x] - table[y0, x] (holes subtract).
    Pixel counts are the same integral of 1: x * (y1 - y0).
    """
    import shapely
    from rasterio.features import shapes

    width = block.shape[1]
    found = list(shapes(block, mask=valid, transform=rasterio.Affine.translation(0, top), connectivity=4))
    none = np.full(width, -1, np.int64)
    if not found:
        ints = np.zeros(0, np.int64)
        return _Pieces(ints, np.zeros(0, object), np.zeros(0), ints, none, none)
    values = np.array([int(v) for _, v in found], np.int64)
    rings = [ring for geom, _ in found for ring in geom["coordinates"]]
    per_piece = np.array([len(geom["coordinates"]) for geom, _ in found])
    lengths = np.array([len(r) for r in rings])
    flat = np.fromiter(chain.from_iterable(chain.from_iterable(rings)), np.float64, count=2 * lengths.sum())
    coords = np.rint(flat.reshape(-1, 2)).astype(np.int64)
    coords[:, 1] -= top  # rows relative to the strip
    ring_id = np.repeat(np.arange(len(rings)), lengths)
    piece_of_ring = np.repeat(np.arange(len(found)), per_piece)
    exterior = np.zeros(len(rings), bool)
    exterior[np.cumsum(per_piece) - per_piece] = True

    x0, y0, x1, y1 = coords[:-1, 0], coords[:-1, 1], coords[1:, 0], coords[1:, 1]
    edge_ring = ring_id[:-1]
    same = edge_ring == ring_id[1:]
    vertical = same & (x0 == x1)
    xs, ya, yb, ring_of = x0[vertical], y0[vertical], y1[vertical], edge_ring[vertical]
    weighted = np.bincount(ring_of, table[yb, xs] - table[ya, xs], minlength=len(rings))
    counted = np.bincount(ring_of, xs * (yb - ya), minlength=len(rings))
    sign = np.where(exterior, 1.0, -1.0)
    areas = np.bincount(piece_of_ring, sign * np.abs(weighted), minlength=len(found))
    pixels = np.bincount(piece_of_ring, sign * np.abs(counted), minlength=len(found))
    pixels = np.rint(pixels).astype(np.int64)

    horizontal = same & (y0 == y1) & exterior[edge_ring]
    owners = []
    for row in (0, block.shape[0]):
        owner = none.copy()
        on = horizontal & (y0 == row)
        for a, b, piece in zip(x0[on], x1[on], piece_of_ring[edge_ring[on]], strict=True):
            owner[min(a, b) : max(a, b)] = piece
        owners.append(owner)
    ring_offsets = np.concatenate([[0], np.cumsum(lengths)])
    piece_offsets = np.concatenate([[0], np.cumsum(per_piece)])
    coords[:, 1] += top
    polygons = shapely.from_ragged_array(
        shapely.GeometryType.POLYGON, coords.astype(np.float64), (ring_offsets, piece_offsets)
    )
    return _Pieces(values, polygons, areas, pixels, owners[0], owners[1])


class _Regions:
    """Union-find over region ids; regions merged across seams keep every piece and add up their areas."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.regions: dict[int, _Region] = {}

    def add(self, region: _Region) -> int:
        rid = len(self.parent)
        self.parent[rid] = rid
        self.regions[rid] = region
        return rid

    def find(self, rid: int) -> int:
        while self.parent[rid] != rid:
            self.parent[rid] = self.parent[self.parent[rid]]
            rid = self.parent[rid]
        return rid

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        if len(self.regions[a].pieces) < len(self.regions[b].pieces):
            a, b = b, a
        self.parent[b] = a
        kept, gone = self.regions[a], self.regions.pop(b)
        kept.pieces += gone.pieces
        kept.area += gone.area
        kept.pixels += gone.pixels

    def pop_finished(self, open_ids: set[int]) -> list[_Region]:
        """Regions that no longer touch the current strip's bottom: complete, removed from the pending set."""
        done = [rid for rid in self.regions if rid not in open_ids]
        return [self.regions.pop(rid) for rid in done]


def _merge_pieces(pieces: list) -> object:
    """One region from its pieces in several strips: the union of the pieces' outer rings, plus every piece's
    holes.

    A piece's hole is enclosed within its strip, so it stays a hole of the region; unioning rings without
    their (often thousands of) holes is what makes this fast (20x on fragmented maps). Holes that only close
    across a seam come out of the union itself.
    """
    import shapely

    merged = shapely.union_all(shapely.polygons(shapely.get_exterior_ring(np.asarray(pieces, object))))
    if merged.geom_type != "Polygon":  # pieces of one region always meet along a seam; never expected
        return shapely.union_all(pieces)
    holes = [ring for piece in pieces for ring in piece.interiors]
    return shapely.Polygon(merged.exterior, [*merged.interiors, *holes])


def layer_description(legend: ClassLegend, made: Sequence[str] = ()) -> dict:
    """What the GeoPackage layer says of its classes (QGIS shows the description in the layer's properties):
    each label as the legend shows it (read as, untrained), the map's notes and how the polygons were made
    (`made`: minimum mapping unit, simplification); also as layer metadata."""
    labels = [legend.label(i) for i in range(len(legend.names))]
    notes = [*legend.notes, *made]
    text = "rsneo classes: " + "; ".join(labels) + "".join(f". Note: {n}" for n in notes)
    return {
        "layer_options": {"DESCRIPTION": text},
        "layer_metadata": {
            "rsneo_class_labels": json.dumps(labels, ensure_ascii=False),
            "rsneo_notes": json.dumps(list(notes), ensure_ascii=False),
        },
    }


def simplify_tolerance(value: str | float | int | None, transform: rasterio.Affine) -> float | None:
    """`--simplify` in pixels: "1.5px" as it says, a bare number in the map's units (divided by the pixel
    size); None or 0: no simplification."""
    if value is None:
        return None
    tolerance, unit = amount(value, "--simplify", "map")
    if unit == "map":
        tolerance /= math.sqrt(abs(transform.a * transform.e - transform.b * transform.d))
    return tolerance or None


def simplified(polygons: np.ndarray, tolerance: float) -> np.ndarray:
    """Polygons (pixel coordinates) simplified as one coverage: every shared edge the same for both polygons
    beside it, so no gap or overlap opens between them (GEOS coverage simplification, Visvalingam-Whyatt).
    The outlines are first given a vertex at every pixel corner they pass, so that neighbours' shared edges
    have the same vertices, as coverage simplification requires."""
    import shapely

    if not len(polygons):
        return polygons
    return shapely.coverage_simplify(shapely.segmentize(polygons, 1.0), tolerance)


def write_class_polygons(
    cog_path: Path,
    gpkg_path: Path,
    legend: ClassLegend | None = None,
    skip: tuple[int, ...] = (),
    strip_rows: int = 1024,
    simplify: str | float | None = None,
) -> dict[str, float]:
    """Polygonise the class band of `cog_path` into layer `classes` of `gpkg_path`; returns area per class
    name.

    Columns: class_id, class_name, area_ha and pixels (integer) with a CRS; class_id, class_name, area_px
    (integer) without one. One polygon per 4-connected region of a class, however many strips it spans.
    `skip` lists class values to leave out (e.g. "no change"). Written to a hidden name, renamed when done.
    `simplify` ("1.5px", or a distance in map units) simplifies the outlines as one coverage (`simplified`);
    the areas stay those of the pixels, so totals are unchanged, but every polygon is held until the end.
    """
    import geopandas as gpd
    import shapely

    gpkg_path = Path(gpkg_path)
    legend = legend or read_legend(cog_path)
    partial = hidden_path(gpkg_path, "partial.gpkg")
    partial.unlink(missing_ok=True)
    totals = {name: 0.0 for i, name in enumerate(legend.names) if i not in skip}
    wrote = False
    try:
        with gdal_env(), open_raster(cog_path) as src:
            areas = PixelAreas.of(src)
            unit = "area_ha" if areas.unit == "ha" else "area_px"
            tolerance = simplify_tolerance(simplify, src.transform)
            sieve = read_sieve(cog_path)
            made = [f"{sieve.sentence()} before tracing"] if sieve is not None else []
            if tolerance:
                made.append(f"outlines simplified by {tolerance:g} px as a coverage (areas are the pixels')")
            t = src.transform
            matrix, offset = np.array([[t.a, t.d], [t.b, t.e]]), np.array([t.c, t.f])

            def to_crs(xy: np.ndarray) -> np.ndarray:  # (n, 2) pixel coordinates -> the raster's CRS
                return xy @ matrix + offset

            regions = _Regions()
            previous_bottom: np.ndarray | None = None  # region id per column of the last strip's bottom row
            previous_row: np.ndarray | None = None  # that row's class values
            # finished polygons not yet on disk (each append reopens the file), as column arrays
            pending: dict[str, list[np.ndarray]] = {"class_id": [], "area": [], "pixels": [], "geometry": []}

            def write(columns: dict) -> None:
                nonlocal wrote
                frame = gpd.GeoDataFrame(columns, geometry="geometry", crs=src.crs)
                with warnings.catch_warnings():  # a class map without a CRS has none on purpose
                    warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)
                    first = {} if wrote else layer_description(legend, made)  # the layer's header, once
                    frame.to_file(partial, layer=LAYER, driver="GPKG", mode="a" if wrote else "w", **first)
                wrote = True

            def finish(class_ids, area, pixels, geometry, last: bool = False) -> None:
                """Queue finished polygons (pixel coordinates); write them when many wait, or at the end."""
                for key, values in zip(pending, (class_ids, area, pixels, geometry), strict=True):
                    pending[key].append(np.asarray(values, object if key == "geometry" else None))
                count = sum(len(v) for v in pending["class_id"])
                if not count or not (last or (count >= WRITE_BATCH and not tolerance)):
                    return  # (a coverage is simplified whole: held to the end)
                ids, area_all, pixels_all, geoms = (np.concatenate(pending[k]) for k in pending)
                ids = ids.astype(np.int64)
                for value, total in enumerate(np.bincount(ids, area_all, minlength=len(legend.names))):
                    if total:
                        totals[legend.names[value]] += total
                columns = {"class_id": ids, "class_name": np.asarray(legend.names, object)[ids]}
                if unit == "area_ha":
                    columns.update(area_ha=area_all.astype(np.float64), pixels=pixels_all.astype(np.int64))
                else:
                    columns["area_px"] = pixels_all.astype(np.int64)
                geoms = simplified(geoms, tolerance) if tolerance else geoms
                columns["geometry"] = shapely.transform(geoms, to_crs)
                write(columns)
                for values in pending.values():
                    values.clear()

            def finish_regions(finished: list[_Region], last: bool = False) -> None:
                finish(
                    [r.class_id for r in finished],
                    [r.area for r in finished],
                    [r.pixels for r in finished],
                    [r.pieces[0] if len(r.pieces) == 1 else _merge_pieces(r.pieces) for r in finished],
                    last,
                )

            for top in range(0, src.height, strip_rows):
                rows = min(strip_rows, src.height - top)
                block = src.read(1, window=Window(0, top, src.width, rows))  # (rows, cols)
                valid = (block != NODATA_CLASS) & (block < len(legend.names))
                for value in skip:
                    valid &= block != value
                table = _summed_table(np.broadcast_to(areas.rows(top, rows), block.shape))
                pieces = _strip_pieces(block, top, valid, table)
                # pieces on neither edge of the strip are whole regions already: written as they are
                on_edge = np.zeros(len(pieces.values), bool)
                for owner in (pieces.top_owner, pieces.bottom_owner):
                    on_edge[owner[owner >= 0]] = True
                inner = ~on_edge
                finish(
                    pieces.values[inner], pieces.areas[inner], pieces.pixels[inner], pieces.polygons[inner]
                )
                region_of = np.full(len(pieces.values) + 1, -1, np.int64)  # piece -> region id; [-1] stays -1
                for piece in np.flatnonzero(on_edge):
                    region_of[piece] = regions.add(
                        _Region(
                            int(pieces.values[piece]),
                            [pieces.polygons[piece]],
                            float(pieces.areas[piece]),
                            int(pieces.pixels[piece]),
                        )
                    )
                top_owner, bottom_owner = region_of[pieces.top_owner], region_of[pieces.bottom_owner]
                if previous_bottom is not None:  # join regions that continue across the seam
                    touch = (previous_bottom >= 0) & (top_owner >= 0) & (previous_row == block[0])
                    for a, b in np.unique(np.stack([previous_bottom[touch], top_owner[touch]], 1), axis=0):
                        regions.union(int(a), int(b))
                open_ids = {regions.find(int(r)) for r in np.unique(bottom_owner[bottom_owner >= 0])}
                finish_regions(regions.pop_finished(open_ids))
                previous_bottom, previous_row = bottom_owner, block[-1]
            finish_regions(regions.pop_finished(set()), last=True)
            if not wrote:  # an empty but valid layer, so the file always opens
                columns = {"area_ha": [], "pixels": []} if unit == "area_ha" else {"area_px": []}
                empty = gpd.GeoDataFrame(
                    {"class_id": [], "class_name": [], **columns}, geometry=[], crs=src.crs
                )
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)
                    empty.to_file(partial, layer=LAYER, driver="GPKG", **layer_description(legend, made))
        atomic.replace(partial, gpkg_path)
    finally:
        partial.unlink(missing_ok=True)
    return {name: _as_unit(area, areas.unit) for name, area in totals.items()}
