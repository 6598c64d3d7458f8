"""`rsneo assess`: a produced class map against a reference sample, with what a map's user must report.

The map is a class map as `rsneo segment` / `rsneo change` write it (class names in its tags); each map
class's area is measured as every rsneo area is (`rsneo.io.areas`: ellipsoidal hectares in any CRS, pixel
counts without one). The reference sample (`rsneo.accuracy.reference`) gives the error matrix of sample
counts, and the estimators of Olofsson et al. (2014) (`rsneo.accuracy.estimators`) the area-weighted error
matrix, overall, user's and producer's accuracy and the error-adjusted area of each class, all with 95%
confidence intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsneo.accuracy.estimators import Z95, AreaEstimates, stratified_estimates
from rsneo.accuracy.reference import ReferenceSample, read_reference
from rsneo.errors import InputError
from rsneo.io.cog import read_legend
from rsneo.io.dataset import check_raster_file, open_raster
from rsneo.io.vector import area_unit, class_areas
from rsneo.metrics import confusion_matrix


@dataclass(frozen=True)
class Assessment:
    """A map, its reference sample and the estimates made from them."""

    map: Path
    reference: ReferenceSample
    unit: str  # "ha", or "px" for a map without a CRS
    estimates: AreaEstimates

    def to_json(self) -> dict:
        """The document `rsneo assess --json` prints (schema in docs/products.md)."""
        e = self.estimates
        names = list(e.classes)

        def per_class(values) -> dict:
            return {name: v.to_json() for name, v in zip(names, values, strict=True)}

        return {
            "map": str(self.map),
            "reference": str(self.reference.path),
            "class_field": self.reference.field,
            "unit": self.unit,
            "classes": names,
            "sample": {
                "features": self.reference.features,
                "used": int(self.reference.map_class.size),
                "outside_map": self.reference.outside,
                "geometry": list(self.reference.kinds),
            },
            "error_matrix": e.counts.tolist(),
            "area_weighted_error_matrix": e.proportions.tolist(),
            "mapped_area": dict(zip(names, e.mapped_area.tolist(), strict=True)),
            "overall_accuracy": e.overall.to_json(),
            "users_accuracy": per_class(e.users),
            "producers_accuracy": per_class(e.producers),
            "area": per_class(e.area),
            "area_share": per_class(e.area_share),
            "unsampled_classes": list(e.unsampled),
            "z": Z95,
        }


def map_classes(path: Path) -> tuple[str, ...]:
    """The class names of a class map written by rsneo (its tags); any other raster is an InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: map not found")
    check_raster_file(path)
    with open_raster(path) as src:
        named = "class_names" in src.tags(1)
    names = read_legend(path).names if named else ()
    if not names:
        raise InputError(
            f"{path}: has no class names in its tags; expected a class map written by rsneo segment or "
            "rsneo change (*_classes.tif, change.tif)"
        )
    return names


def assess_map(map_path: Path, reference_path: Path, field: str) -> Assessment:
    """Assess the class map at `map_path` with the features of `reference_path` (their class in `field`)."""
    map_path = Path(map_path)
    classes = map_classes(map_path)
    sample = read_reference(Path(reference_path), field, map_path, classes)
    if not sample.map_class.size:
        raise InputError(
            f"{sample.path}: none of its {sample.features} features lies on a valid pixel of the map "
            f"{map_path}; expected reference points or polygons inside the mapped area"
        )
    areas = class_areas(map_path)
    mapped = np.array([areas[name] for name in classes], np.float64)
    k = len(classes)
    counts = confusion_matrix(sample.map_class, sample.reference_class, k)  # rows: map, columns: reference
    estimates = stratified_estimates(counts, mapped, classes)
    return Assessment(map_path, sample, area_unit(map_path), estimates)
