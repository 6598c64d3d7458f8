"""Sensors and their bands, from YAML: the package's own files plus any the user adds.

A sensor YAML has `name`, `title`, `aliases`, `units` (what the stored numbers mean), `groups` (band
group name -> member band names, in the order the group's channels are fed to the model) and `bands`
(name, aliases, STAC `common_name` or SAR polarisation, central `wavelength` in micrometres, native
`resolution` in metres, `mean`/`std` in the stored units). User sensors come from
`register_sensor(path)` or from the folders/files listed in the `RSNEO_SENSORS` environment variable
(os.pathsep separated); a user sensor with a built-in name replaces it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from rsneo.errors import InputError

# libyaml's safe loader where PyYAML was built with it: the same documents, 9x less CPU (the 10 built-in
# sensors: 39 -> 4 ms, paid by every command that reads a raster)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

PACKAGE_DIR = Path(__file__).parent
USER_ENV = "RSNEO_SENSORS"


@dataclass(frozen=True)
class Band:
    """One spectral band (or SAR polarisation) of a sensor."""

    name: str
    common_name: str  # STAC eo:common_name or SAR polarisation (vv, vh, hh, hv); "" if none
    wavelength: float  # central wavelength, micrometres (radar: the radar wavelength)
    resolution: float | None  # native ground sampling distance, metres (None: not georeferenced)
    mean: float  # normalisation statistics in the sensor's stored units
    std: float
    group: str = ""  # default band group
    aliases: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        """Every name this band answers to, its own first."""
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class Sensor:
    """A sensor: its bands in stored order and how they are grouped for the model."""

    name: str
    title: str
    bands: tuple[Band, ...]
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    units: str = ""
    source: str = ""  # the YAML file it came from

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    def band(self, name: str) -> Band:
        """The band called `name` (name, alias or unique common name); unknown names are an InputError."""
        wanted = name.strip().lower()
        for band in self.bands:
            if wanted in (n.lower() for n in band.names()):
                return band
        by_common = [b for b in self.bands if b.common_name.lower() == wanted]
        if len(by_common) == 1:  # a STAC common name that only one band carries
            return by_common[0]
        raise InputError(
            f"unknown band name {name!r} for sensor {self.name}: expected one of {', '.join(self.band_names)}"
        )

    def select(self, names: list[str] | None) -> list[Band]:
        """Bands by name, in the order given (all bands, in stored order, when `names` is None)."""
        return list(self.bands) if names is None else [self.band(n) for n in names]

    def groups_for(self, bands: list[Band]) -> dict[str, list[Band]]:
        """Split the given bands into the sensor's groups (group order, channel order from the YAML).

        Bands without a group each form a group of their own named after the band.
        """
        present = {b.name: b for b in bands}
        out: dict[str, list[Band]] = {}
        for group, members in self.groups.items():
            chosen = [present[m] for m in members if m in present]
            if chosen:
                out[group] = chosen
        for band in bands:
            if not band.group:
                out[band.name] = [band]
        return out


def _sensor_from_dict(data: dict, source: str) -> Sensor:
    """Validate one parsed YAML document into a `Sensor`; every problem names the file and the field."""
    if not isinstance(data, dict):
        raise InputError(
            f"{source}: expected a YAML mapping with name and bands, found {type(data).__name__}"
        )
    for key in ("name", "bands"):
        if key not in data:
            raise InputError(f"{source}: expected a '{key}' field, found keys {sorted(data)}")
    groups = {str(g): tuple(str(m) for m in members) for g, members in (data.get("groups") or {}).items()}
    group_of = {m: g for g, members in groups.items() for m in members}
    bands = []
    for i, raw in enumerate(data["bands"]):
        missing = [k for k in ("name", "wavelength", "mean", "std") if k not in raw]
        if missing:
            raise InputError(f"{source}: band {i + 1} ({raw.get('name', '?')}) is missing {missing}")
        if float(raw["std"]) <= 0:
            raise InputError(f"{source}: band {raw['name']}: expected std > 0, found {raw['std']}")
        bands.append(
            Band(
                name=str(raw["name"]),
                common_name=str(raw.get("common_name") or ""),
                wavelength=float(raw["wavelength"]),
                resolution=None if raw.get("resolution") is None else float(raw["resolution"]),
                mean=float(raw["mean"]),
                std=float(raw["std"]),
                group=str(raw.get("group") or group_of.get(str(raw["name"]), "")),
                aliases=tuple(str(a) for a in raw.get("aliases") or ()),
            )
        )
    names = {b.name for b in bands}
    for group, members in groups.items():
        unknown = [m for m in members if m not in names]
        if unknown:
            raise InputError(f"{source}: group {group} names unknown bands {unknown}")
    return Sensor(
        name=str(data["name"]),
        title=str(data.get("title", data["name"])),
        bands=tuple(bands),
        groups=groups,
        aliases=tuple(str(a) for a in data.get("aliases") or ()),
        units=str(data.get("units", "")),
        source=source,
    )


def load_sensor_yaml(path: str | Path) -> Sensor:
    """Read one sensor YAML file."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(), Loader=SAFE_LOADER)
    except FileNotFoundError:
        raise InputError(f"{path}: sensor file not found") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from None
    return _sensor_from_dict(data, str(path))


_USER: dict[str, Sensor] = {}


@cache
def _builtin() -> dict[str, Sensor]:
    return {s.name: s for s in (load_sensor_yaml(p) for p in sorted(PACKAGE_DIR.glob("*.yaml")))}


def _from_env() -> dict[str, Sensor]:
    out = {}
    for entry in filter(None, os.environ.get(USER_ENV, "").split(os.pathsep)):
        path = Path(entry)
        files = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")) if path.is_dir() else [path]
        for file in files:
            sensor = load_sensor_yaml(file)
            out[sensor.name] = sensor
    return out


def register_sensor(source: str | Path | Sensor) -> Sensor:
    """Add (or replace) a sensor for this process, from a YAML path or a `Sensor`."""
    sensor = source if isinstance(source, Sensor) else load_sensor_yaml(source)
    _USER[sensor.name] = sensor
    return sensor


def list_sensors() -> list[Sensor]:
    """All known sensors: built-in, `RSNEO_SENSORS`, then registered ones (later replace earlier)."""
    return list({**_builtin(), **_from_env(), **_USER}.values())


def get_sensor(name: str | Sensor) -> Sensor:
    """A sensor by name or alias (case-insensitive)."""
    if isinstance(name, Sensor):
        return name
    wanted = name.strip().lower()
    for sensor in reversed(list_sensors()):
        if wanted == sensor.name.lower() or wanted in (a.lower() for a in sensor.aliases):
            return sensor
    known = ", ".join(s.name for s in list_sensors())
    raise InputError(f"unknown sensor {name!r}: expected one of {known} (or add one with a YAML file)")
