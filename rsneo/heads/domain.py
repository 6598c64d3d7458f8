"""What imagery each head of a model folder was trained on, and whether an input lies inside it.

A head trained on 10 m Sentinel-2 maps whatever it is given: on a 0.5 m aerial photo it still paints "water",
on soil and roads, with nothing to tell the user. So a model folder records, in `domain.json`, the sensors
(keys of `rsneo/sensors/*.yaml`) and the range of pixel sizes in metres each head ("segmentation",
"change") was trained on. The product commands compare every input with the domain of the head that makes
their map: a sensor never trained on, a pixel size outside [0.5 x smallest, 2 x largest] of the trained
range, or an unknown pixel size (no georeference) while the range is known, gives one
`OutsideTrainingWarning` naming the file and a note in the outputs; `strict` refuses it (InputError).
A folder without `domain.json` (older folders, random test models) records nothing, and nothing is warned.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rsneo import atomic
from rsneo.errors import InputError, OutsideTrainingWarning

DOMAIN_JSON = "domain.json"
UNVERIFIED_TITLE = " (unverified: outside the model's training data)"  # a QGIS project's title, when noted
HEADS = ("segmentation", "change")
# An input's pixel size counts as trained within [SMALLER x the smallest, LARGER x the largest] trained size:
# a factor of two either way is a resampling the model sees no different from the training tiles' own spread.
SMALLER, LARGER = 0.5, 2.0


@dataclass(frozen=True)
class HeadDomain:
    """The sensors and pixel sizes (metres, smallest and largest) one head was trained on."""

    sensors: tuple[str, ...]
    pixel_size_m: tuple[float, float] | None = None  # None: not recorded, sizes are not checked

    def describe(self) -> str:
        """ "sentinel2_l1c at 10 m only" or "sentinel2_l1c, naip at 5-90 m"."""
        sensors = ", ".join(self.sensors)
        if self.pixel_size_m is None:
            return sensors
        low, high = self.pixel_size_m
        if math.isclose(low, high, rel_tol=0.05):
            return f"{sensors} at {format_size(low)} only"
        return f"{sensors} at {format_size(low).removesuffix(' m')}-{format_size(high)}"

    def including(self, sensor: str, pixel_size: float | None) -> HeadDomain:
        """This domain widened by one more training source (its sensor and pixel size)."""
        sensors = self.sensors if sensor in self.sensors else (*self.sensors, sensor)
        sizes = self.pixel_size_m
        if pixel_size is not None:
            sizes = (pixel_size, pixel_size) if sizes is None else (min(sizes[0], pixel_size),
                                                                    max(sizes[1], pixel_size))  # fmt: skip
        return HeadDomain(sensors, sizes)


@dataclass(frozen=True)
class TrainingDomain:
    """A model folder's `domain.json`: per head, the imagery it was trained on."""

    heads: dict[str, HeadDomain] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Imagery:
    """One input as the domain check sees it: its sensor key and pixel size in metres (None: unknown)."""

    path: Path
    sensor: str
    pixel_size: float | None

    def describe(self) -> str:
        size = "an unknown pixel size" if self.pixel_size is None else format_size(self.pixel_size)
        return f"{self.sensor} imagery at {size}"


def format_size(metres: float) -> str:
    """10.0 -> "10 m", 0.5 -> "0.5 m", 8.73 -> "8.7 m" (two significant digits below 10 m)."""
    return f"{metres:.0f} m" if metres >= 10 else f"{metres:.2g} m"


def load_domain(folder: Path | None) -> TrainingDomain | None:
    """The folder's training domain, or None when it records none."""
    path = Path(folder) / DOMAIN_JSON if folder is not None else None
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        heads = {}
        for name, head in data["heads"].items():
            sizes = head.get("pixel_size_m")
            heads[str(name)] = HeadDomain(
                tuple(str(s) for s in head["sensors"]),
                None if sizes is None else (float(sizes[0]), float(sizes[1])),
            )
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise InputError(
            f"{path}: expected per head a list of sensors and a [smallest, largest] pixel size in metres, "
            f"could not read it ({exc})"
        ) from None
    unknown = sorted(set(heads) - set(HEADS))
    if unknown:
        raise InputError(f"{path}: expected heads among {', '.join(HEADS)}, found {', '.join(unknown)}")
    return TrainingDomain(heads, str(data.get("note", "")))


def save_domain(folder: Path, domain: TrainingDomain) -> Path:
    """Write `domain.json` into `folder` (hidden name, then rename)."""
    path = Path(folder) / DOMAIN_JSON
    data = {
        "heads": {
            name: {
                "sensors": list(head.sensors),
                "pixel_size_m": head.pixel_size_m and [round(v, 3) for v in head.pixel_size_m],
            }
            for name, head in domain.heads.items()
        },
        "note": domain.note,
    }
    atomic.write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return path


def pixel_size(path: Path) -> float | None:
    """Ground size of the raster's central pixel in metres (square root of its true area, in any CRS; see
    `rsneo.io.areas`), or None without a georeference."""
    from rsneo.io.areas import SQ_M_PER_HA, PixelAreas
    from rsneo.io.read import open_input

    with open_input(path) as src:
        if src.crs is None:
            return None
        areas = PixelAreas.of(src).rows(src.height // 2, 1)  # hectares, (1, 1) or (1, width)
        area = float(areas[0, min(src.width // 2, areas.shape[1] - 1)]) * SQ_M_PER_HA
    return math.sqrt(area) if area > 0 else None


def imagery(path: Path, sensor: str | None = None, bands: list[str] | None = None) -> Imagery:
    """The sensor (as the reader identifies it for `band_layout`; an RGB picture is "rgb") and pixel size of
    an input. Only the headers are read: no band statistics, which the commands measure once themselves."""
    from rsneo.io.read import PixelUnitsWarning, open_source

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PixelUnitsWarning)  # the commands warn about pixel units themselves
        name = open_source(path, sensor=sensor, bands=bands).sensor.name
    return Imagery(Path(path), name, pixel_size(path))


def is_outside(head: HeadDomain, item: Imagery) -> bool:
    """True when `item` lies outside `head`'s training domain (sensor, or pixel size when one is recorded)."""
    if item.sensor not in head.sensors:
        return True
    if head.pixel_size_m is None:
        return False
    if item.pixel_size is None:
        return True
    low, high = head.pixel_size_m
    return not SMALLER * low <= item.pixel_size <= LARGER * high


def outside_message(system, head: str, inputs: Sequence[Imagery]) -> str | None:
    """The sentence saying which inputs lie outside the training domain of `head`, or None when all lie
    inside it (or the folder records no domain for that head)."""
    domain = getattr(system, "domain", None)
    trained = domain.heads.get(head) if domain is not None else None
    if trained is None:
        return None
    outside = [item for item in inputs if is_outside(trained, item)]
    if not outside:
        return None
    groups: dict[str, list[str]] = {}
    for item in outside:  # the dates of one pair usually share the description: named together
        groups.setdefault(item.describe(), []).append(str(item.path))
    found = "; ".join(f"{', '.join(dict.fromkeys(paths))}: {what}" for what, paths in groups.items())
    return f"{found}; the {head} head was trained on {trained.describe()}: {_consequence(system, head)}"


def _consequence(system, head: str) -> str:
    """What being outside means for the map: a trained change head with a magnitude to fall back on is left
    out (`rsneo.predict.change`), any other head's map is shown but unverified."""
    change = getattr(system, "change", None)
    if head == "change" and getattr(change, "uses_magnitude", False) and "change" in system.trained_heads:
        return "its vote is left out, the map is the change magnitude alone (change-vector analysis)"
    return "its map here is unverified"


def inside(
    system, head: str, rasters: Sequence[Path], sensor: str | None = None, bands: list[str] | None = None
) -> bool:
    """True when every input lies inside `head`'s training domain, or the folder records none (no warning:
    for choosing what to trust, where `check_inputs` tells the user)."""
    if getattr(system, "domain", None) is None or head not in system.domain.heads:
        return True
    return outside_message(system, head, [imagery(r, sensor, bands) for r in rasters]) is None


def check_inputs(
    system,
    head: str,
    rasters: Sequence[Path],
    *,
    sensor: str | None = None,
    bands: list[str] | None = None,
    strict: bool = False,
) -> str | None:
    """Warn once (`OutsideTrainingWarning`) when an input lies outside `head`'s training domain and return
    the sentence for the outputs' notes; `strict` refuses such input (InputError) before anything is
    written. None when every input lies inside, or the model folder records no domain."""
    if getattr(system, "domain", None) is None or head not in system.domain.heads:
        return None
    message = outside_message(system, head, [imagery(r, sensor, bands) for r in rasters])
    if message is None:
        return None
    if strict:
        raise InputError(f"{message}; --strict refuses input outside the model's training data")
    warnings.warn(message, OutsideTrainingWarning, stacklevel=2)
    return message
