"""What each product is asked (a typed request record) and what it gives back (a result record).

A request says everything a run depends on: the rasters, how their bands are read, the window plan and the
product's own options. The product functions (`segment_raster`, `detect_change`, `map_new_buildings`,
`ask`) take one request each, check it (a user's mistake is an `InputError` naming the option) and return a
result record: the files written, the class totals and the notes written into them, so a caller (the CLI, a
notebook, a script printing JSON) needs nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rsneo.errors import InputError
from rsneo.io.cog import NODATA_CLASS
from rsneo.io.sieve import DEFAULT_MIN_AREA
from rsneo.predict.sliding_window import WindowPlan

MAX_CLASSES = NODATA_CLASS - 2  # typed classes and "none of these" below the class map's nodata value


def parse_classes(text: str | Sequence[str], most: int = MAX_CLASSES) -> list[str]:
    """ "water, forest,built-up" -> ["water", "forest", "built-up"]; an empty list, or more than `most` names,
    is an InputError (checked before any model work or warning)."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    if not names:
        raise InputError(f"--classes: expected a comma-separated list of class names, got {text!r}")
    if len(names) > most:
        raise InputError(f"--classes: expected at most {most} class names, got {len(names):,}")
    if len(set(n.lower() for n in names)) != len(names):
        raise InputError(f"--classes: class names must differ, got {names}")
    return names


def check_dates(rasters: Sequence[Path]) -> None:
    """Dates of one place for a change-kind product: two or more, every one there."""
    if len(rasters) < 2:
        raise InputError(f"change: expected two or more rasters (dates of one place), got {len(rasters)}")
    for raster in rasters:
        if not Path(raster).exists():
            raise InputError(f"{raster}: file not found")


def _paths(values: Path | str | Sequence[Path | str]) -> tuple[Path, ...]:
    return (Path(values),) if isinstance(values, str | Path) else tuple(Path(v) for v in values)


@dataclass(frozen=True, kw_only=True)
class Reading:
    """How a product reads its rasters and walks them; every request has these."""

    sensor: str | None = None  # when the metadata does not tell (`rsneo sensors`)
    bands: tuple[str, ...] | None = None  # the rasters' band names in file order
    plan: WindowPlan = field(default_factory=WindowPlan)
    show_progress: bool = False  # a rich progress bar on the console

    def __post_init__(self) -> None:
        """Paths as `Path`, lists as tuples: a request holds what was asked, whatever types it came in."""
        converters = {"raster": Path, "out": Path, "rasters": _paths, "bands": tuple}
        for name, convert in converters.items():
            value = getattr(self, name, None)
            if value is not None:
                object.__setattr__(self, name, convert(value))

    @property
    def band_list(self) -> list[str] | None:
        """`bands` as the readers take them."""
        return None if self.bands is None else list(self.bands)


@dataclass(frozen=True, kw_only=True)
class MapRequest(Reading):
    """A product writing a class map and polygons: its minimum mapping unit and outline simplification."""

    min_area: str | float = DEFAULT_MIN_AREA  # regions smaller than this are sieved: "0.5" ha or "4px"
    simplify: str | float | None = None  # polygon outlines: "1.5px" or map units; None: as traced


@dataclass(frozen=True)
class SegmentRequest(MapRequest):
    """`rsneo segment`: one raster, class names as words, an output folder."""

    raster: Path
    classes: tuple[str, ...] | str
    out: Path
    none_threshold: float | None = None  # cosine below which a pixel is "none of these" (None: the head's)
    confidence: bool = True  # also write the winning probability in percent
    strict: bool = False  # refuse untrained class names and imagery outside the training data


@dataclass(frozen=True)
class ChangeRequest(MapRequest):
    """`rsneo change`: dates of one place (oldest first), optional class names for from-to change."""

    rasters: tuple[Path, ...]
    out: Path
    classes: tuple[str, ...] | str | None = None
    strict: bool = False


@dataclass(frozen=True)
class BuildingsRequest(MapRequest):
    """`rsneo change --of buildings`: new buildings between the first and last of RGB dates, 2 m or finer."""

    rasters: tuple[Path, ...]
    out: Path
    pixel_size: float | None = None  # metres per pixel of images without georeference


@dataclass(frozen=True)
class AskRequest(Reading):
    """`rsneo ask`: one question over one raster or dates of one place."""

    rasters: tuple[Path, ...]
    question: str
    max_side: int = 512  # maps are made on overviews of at most this many pixels a side
    pixel_size: float | None = None  # new buildings: metres per pixel of images without georeference
    min_area: str | float = DEFAULT_MIN_AREA  # regions smaller than this are sieved: "0.5" ha or "4px"


@dataclass
class SegmentOutputs:
    cog: Path
    gpkg: Path
    qml: Path
    qgz: Path
    confidence: Path | None  # winning probability in percent, when asked for
    areas: dict[str, float]  # class name -> hectares (or integer pixel counts without a CRS)
    area_unit: str  # "ha" or "px"
    notes: tuple[str, ...] = ()  # caveats also written into the outputs (input outside the training data)
    labels: dict[str, str] = field(
        default_factory=dict
    )  # class name -> its legend label (read as, untrained)
    sieve: str = ""  # what the minimum mapping unit changed (areas above are after it)


@dataclass
class ChangeOutputs:
    cog: Path
    gpkg: Path
    qml: Path
    qgz: Path
    table: Path
    report: Path
    changed_area: float
    compared_area: float
    area_unit: str
    summary: str
    notes: tuple[str, ...] = ()  # caveats also written into the report (input outside the training data)
    sieve: str = ""  # what the minimum mapping unit changed (areas above are after it)
