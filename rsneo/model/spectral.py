"""Where a band group sits on the spectral (S) axis, and which bands the model knows by name.

The S coordinate of a group is `SPECTRAL_SCALE * mean(ln(wavelength / 0.3 um))` over its optical bands: blue
lands
near 8, NIR near 16.5, SWIR-2 near 32, thermal near 58. Radar has no useful optical wavelength, so SAR groups
get
a fixed far range, one coordinate per polarisation (`vv` 100, `vh` 101, `hh` 102, `hv` 103); a mixed group
takes
the mean. An unseen sensor therefore lands next to the bands it physically resembles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rsneo.errors import InputError

SPECTRAL_SCALE = 16.0  # S units per natural-log unit of wavelength
SPECTRAL_ORIGIN_UM = 0.3
SAR_COORDINATES = {"vv": 100.0, "vh": 101.0, "hh": 102.0, "hv": 103.0}
MICROWAVE_UM = 1000.0  # anything longer than 1 mm is radar

# Bands with a learned per-band kernel correction: STAC eo:common_name values, then SAR polarisations.
KNOWN_BAND_KEYS: tuple[str, ...] = (
    "coastal", "blue", "green", "red", "yellow", "rededge", "rededge071", "rededge075", "rededge078",
    "nir", "nir08", "nir09", "cirrus", "swir16", "swir22", "pan", "lwir", "lwir11", "lwir12",
    "vv", "vh", "hh", "hv",
)  # fmt: skip
SAR_KEYS: tuple[str, ...] = tuple(SAR_COORDINATES)


def is_radar(wavelength_um: float, band_key: str = "") -> bool:
    return band_key in SAR_COORDINATES or wavelength_um >= MICROWAVE_UM


def band_coordinate(wavelength_um: float, band_key: str = "") -> float:
    """S coordinate of one band (see the module docstring)."""
    if is_radar(wavelength_um, band_key):
        if band_key not in SAR_COORDINATES:
            raise InputError(
                f"band {band_key!r}: radar wavelength {wavelength_um} um needs a polarisation key "
                f"({', '.join(SAR_COORDINATES)}), found none"
            )
        return SAR_COORDINATES[band_key]
    if not wavelength_um > 0:
        raise InputError(
            f"band {band_key!r}: expected a positive central wavelength in um, found {wavelength_um}"
        )
    return SPECTRAL_SCALE * math.log(wavelength_um / SPECTRAL_ORIGIN_UM)


def spectral_coordinate(wavelengths_um: Sequence[float], band_keys: Sequence[str] | None = None) -> float:
    """S coordinate of a band group: the mean of its bands' coordinates.

    >>> round(spectral_coordinate([0.665, 0.56, 0.49], ["red", "green", "blue"]), 2)
    10.19
    >>> spectral_coordinate([55465.0, 55465.0], ["vv", "vh"])
    100.5
    """
    wavelengths = [float(w) for w in wavelengths_um]
    keys = list(band_keys) if band_keys is not None else [""] * len(wavelengths)
    if not wavelengths or len(keys) != len(wavelengths):
        raise InputError(
            f"band group: expected one key per wavelength and at least one band, "
            f"found {len(wavelengths)} wavelengths and {len(keys)} keys"
        )
    return sum(band_coordinate(w, k) for w, k in zip(wavelengths, keys, strict=True)) / len(wavelengths)
