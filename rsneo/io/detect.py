"""What a raster is: its sensor, which sensor band each of its bands is, and its acquisition date.

The sensor is read from metadata where possible (product names in the file name, ENVI `sensor type`, band
descriptions that only one sensor's band names explain, RGB colour interpretation); otherwise the user says
(`sensor=` / `--sensor`), and an ambiguous raster gets an error that says what to pass.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp

from rsneo.errors import InputError
from rsneo.io.dataset import data_bands
from rsneo.sensors import Band, Sensor, get_sensor, list_sensors

# Product naming conventions (ESA, USGS, USDA) -> sensor.
NAME_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"MSIL2A|_L2A_", "sentinel2_l2a"),
    (r"MSIL1C|_L1C_", "sentinel2_l1c"),
    (r"(^|_)S1[ABCD]_|_GRD[HM]?_", "sentinel1_grd"),
    (r"^m_\d{7}_", "naip"),
    (r"^L[CO]0[89]_", "landsat8_oli"),
    (r"^LE07_", "landsat7_etm"),
    (r"^LT0[45]_", "landsat5_tm"),
)
ENVI_SENSORS: tuple[tuple[str, str], ...] = (
    ("ETM", "landsat7_etm"),
    ("OLI", "landsat8_oli"),
    ("TM", "landsat5_tm"),
)
WAVELENGTH_TOLERANCE_UM = 0.05
_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])(?!\d)")
_YEAR = re.compile(r"^((?:19|20)\d{2})(?!\d)")
# Pre-collection Landsat scene ids (L71119038_03820000317: sensor, path/row, then the date), as ENVI band
# names of USGS products carry them.
_LANDSAT_ID = re.compile(r"L[ETCMO]?[4-9]\d{6,7}_\d{3}((?:19|20)\d{2})(\d{2})(\d{2})")
# Scene ids whose first date-like field is not the acquisition date, or which carry a day of year:
# Landsat collection ids (LC08_L1TP_042034_20200101_20200113_01_T1: acquired, then processed),
# pre-collection ids (LT51190382000077BJC00: year + day of year), old Sentinel-2 names
# (..._<processed>_..._V<sensed>T...) and MODIS-style ".A2017001." (year + day of year).
_SCENE_DATES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"L[COTEM]0\d_[A-Z0-9]{4}_\d{6}_((?:19|20)\d{6})_\d{8}"), "ymd"),
    (re.compile(r"(?<![A-Z0-9])L[COTEM][1-9]\d{6}((?:19|20)\d{2})(\d{3})[A-Z]{3}\d{2}"), "doy"),
    (re.compile(r"S2[A-D]_OPER_.*_V((?:19|20)\d{6})T"), "ymd"),
    (re.compile(r"\.A((?:19|20)\d{2})(\d{3})\."), "doy"),
)
# Metadata keys that hold an acquisition date (Landsat MTL, Sentinel-2 SAFE via GDAL, common TIFF tags).
_DATE_TAGS = (
    "DATE_ACQUIRED", "ACQUISITION_DATE", "ACQUISITIONDATETIME", "SENSING_TIME", "PRODUCT_START_TIME",
    "DATATAKE_1_DATATAKE_SENSING_START", "acquisition_time",
)  # fmt: skip


def _resolves(sensor: Sensor, names: list[str]) -> bool:
    known = {n.lower() for b in sensor.bands for n in b.names()}
    return all(n and n.lower() in known for n in names)


def detect_sensor(
    path: Path,
    src: rasterio.DatasetReader,
    band_names: list[str],
    given: str | Sensor | None,
    band_count: int,
) -> Sensor:
    """The sensor of a raster: `given` if set, else from its metadata; an InputError says what to pass."""
    if given is not None:
        return get_sensor(given)
    for pattern, name in NAME_PATTERNS:
        if re.search(pattern, path.name, re.IGNORECASE):
            return get_sensor(name)
    envi = src.tags(ns="ENVI").get("sensor_type", "") if "ENVI" in src.tag_namespaces() else ""
    for key, name in ENVI_SENSORS:
        if key in envi.upper():
            return get_sensor(name)
    if band_names and all(band_names):
        fits = [s for s in list_sensors() if _resolves(s, band_names)]
        exact = [s for s in fits if len(s.bands) == band_count]
        if len(fits) == 1 or len(exact) == 1:
            return (exact or fits)[0]
    rgb = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    interp = tuple(src.colorinterp[i - 1] for i in data_bands(src))  # without an alpha band that is a mask
    if band_count == 3 and (interp == rgb or src.driver in ("PNG", "JPEG")):
        return get_sensor("rgb")
    same_count = [s.name for s in list_sensors() if len(s.bands) == band_count] or ["none"]
    raise InputError(
        f"{path}: cannot tell which sensor made this raster ({band_count} bands, {src.dtypes[0]}, "
        f"no sensor or band names in its metadata); pass --sensor NAME (sensors with {band_count} "
        f"bands: {', '.join(same_count)}), and --bands NAME,... if they are not that sensor's bands in order"
    )


def assign_bands(
    path: Path,
    sensor: Sensor,
    band_names: list[str],
    given: list[str] | None,
    wavelengths: list[float] | None,
    band_count: int,
) -> list[Band]:
    """Which sensor band each of the raster's bands is, in file order."""
    if given is not None:
        if len(given) != band_count:
            raise InputError(
                f"{path}: --bands names {len(given)} bands ({','.join(given)}) "
                f"but the raster has {band_count}"
            )
        return [sensor.band(n) for n in given]
    if band_names and _resolves(sensor, band_names):
        return [sensor.band(n) for n in band_names]
    if wavelengths:
        matched = []
        for wl in wavelengths:
            band = min(sensor.bands, key=lambda b: abs(b.wavelength - wl))
            if abs(band.wavelength - wl) > WAVELENGTH_TOLERANCE_UM or band in matched:
                break
            matched.append(band)
        if len(matched) == band_count:
            return matched
    if band_count == len(sensor.bands):
        return list(sensor.bands)
    raise InputError(
        f"{path}: has {band_count} bands but sensor {sensor.name} has {len(sensor.bands)} "
        f"({','.join(sensor.band_names)}); pass --bands with the {band_count} band names in file order"
    )


def folder_band_name(file: Path) -> str:
    """Band name of a one-band file in a band folder: the last `_` part of its stem (`..._B8A.tif` -> B8A)."""
    return file.stem.rsplit("_", 1)[-1]


def scene_id_date(name: str) -> np.datetime64 | None:
    """The acquisition date in a Landsat, Sentinel or MODIS scene id inside `name`, else None."""
    for pattern, layout in _SCENE_DATES:
        match = pattern.search(name)
        if match is None:
            continue
        if layout == "doy":
            year, day = int(match.group(1)), int(match.group(2))
            if 1 <= day <= 366:
                return np.datetime64(f"{year}-01-01", "D") + np.timedelta64(day - 1, "D")
            continue
        text = match.group(1)
        date = _DATE.fullmatch(text)
        if date:
            return np.datetime64("-".join(date.groups()), "D")
    return None


def _metadata_date(src: rasterio.DatasetReader) -> np.datetime64 | None:
    tags = {**src.tags(), **(src.tags(ns="ENVI") if "ENVI" in src.tag_namespaces() else {})}
    for key in _DATE_TAGS:
        match = _DATE.search(str(tags.get(key, "")).replace(":", "-", 2)[:10])
        if match:
            return np.datetime64("-".join(match.groups()), "D")
    return None


def acquisition_date(path: Path, src: rasterio.DatasetReader | None = None) -> np.datetime64 | None:
    """Acquisition date: from the metadata, a scene id in the name (Landsat, Sentinel, MODIS), a date in the
    name (`20170613`, `2017-06-13`), a Landsat scene id in an ENVI header, or a leading year in the name
    (`1985.tif` -> 1985-01-01)."""
    found = _metadata_date(src) if src is not None else None
    found = found or scene_id_date(path.name) or scene_id_date(path.parent.name)
    if found is not None:
        return found
    match = _DATE.search(path.name)
    if match:
        return np.datetime64("-".join(match.groups()), "D")
    if src is not None and "ENVI" in src.tag_namespaces():
        match = _LANDSAT_ID.search(src.tags(ns="ENVI").get("band_names", ""))
        if match:
            return np.datetime64("-".join(match.groups()), "D")
    match = _YEAR.match(path.stem)
    if match:
        return np.datetime64(f"{match.group(1)}-01-01", "D")
    return None
