"""Spectral coordinates: ordered by wavelength, SAR in its own fixed range with polarisations told apart."""

from __future__ import annotations

import doctest

import pytest

import rsneo.model.spectral as spectral
from rsneo.errors import InputError
from rsneo.model.spectral import spectral_coordinate


def test_docstring_examples():
    assert doctest.testmod(spectral).failed == 0


def test_coordinates_follow_wavelength_and_are_order_free():
    s2 = {"blue": 0.49, "green": 0.56, "red": 0.665, "nir": 0.842, "swir16": 1.61, "swir22": 2.19}
    coords = [spectral_coordinate([w], [k]) for k, w in s2.items()]
    assert coords == sorted(coords)
    assert spectral_coordinate([0.49, 0.665], ["blue", "red"]) == spectral_coordinate(
        [0.665, 0.49], ["red", "blue"]
    )


def test_sar_is_far_from_optical_and_polarisations_differ():
    vv = spectral_coordinate([55465.0], ["vv"])
    vh = spectral_coordinate([55465.0], ["vh"])
    thermal = spectral_coordinate([11.0], ["lwir"])
    assert vv != vh and min(vv, vh) > thermal + 30
    assert spectral_coordinate([55465.0, 55465.0], ["vv", "vh"]) == pytest.approx((vv + vh) / 2)


def test_bad_bands_are_named():
    with pytest.raises(InputError, match="polarisation"):
        spectral_coordinate([55465.0], [""])
    with pytest.raises(InputError, match="positive central wavelength"):
        spectral_coordinate([0.0], ["blue"])
    with pytest.raises(InputError, match="one key per wavelength"):
        spectral_coordinate([0.49, 0.56], ["blue"])
