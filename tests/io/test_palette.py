"""Class colours: meaning first, and no two classes of one map hard to tell apart (CIELAB delta-E)."""

from __future__ import annotations

import pytest

from rsneo.io.palette import MIN_DELTA_E, class_colors, delta_e, family_of, lab, min_delta_e

NONE = "none of these"

# Class lists users typed in the issue and common land-cover legends (CORINE, WorldCover, Dynamic World).
LISTS = [
    ["water", "vegetation", "built-up", "cropland", NONE],
    ["river and lakes", "urban area", "farmland", "forest", NONE],
    ["building", "road", "vegetation", "water", NONE],
    ["water", "land", NONE],
    ["tree cover", "shrubland", "grassland", "cropland", "built-up", "bare / sparse vegetation",
     "snow and ice",
     "permanent water bodies", "herbaceous wetland", "mangroves", "moss and lichen", NONE],
    ["water", "trees", "grass", "flooded vegetation", "crops", "shrub and scrub", "built area", "bare ground",
     "snow and ice", NONE],
    ["snow", "cloud", NONE, "road", "bare soil", "sand", "land", "wetland", "forest", "vegetation", "grass",
     "shrub", "no change"],
    ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"],
]  # fmt: skip


def hue_of(rgb):
    """(lightness, a, b) of one colour."""
    return tuple(lab([rgb])[0])


def test_lab_matches_reference_values():
    # sRGB white is L=100, a=b=0; pure red is about (53.2, 80.1, 67.2) (D65), to rounding of the matrix
    assert lab([(255, 255, 255)])[0] == pytest.approx([100, 0, 0], abs=0.05)
    assert lab([(255, 0, 0)])[0] == pytest.approx([53.24, 80.09, 67.20], abs=0.1)
    assert delta_e((0, 0, 0), (255, 255, 255)) == pytest.approx(100, abs=0.05)


def test_the_colours_the_issue_complained_about_were_too_close_and_ours_are_not():
    assert delta_e((0x39, 0x6B, 0xE5), (0x1F, 0x78, 0xE6)) < MIN_DELTA_E  # old vegetation beside water
    assert min_delta_e(class_colors(["water", "vegetation"])) >= MIN_DELTA_E


@pytest.mark.parametrize("names", LISTS, ids=lambda n: ",".join(n)[:40])
def test_no_two_classes_are_hard_to_tell_apart(names):
    colors = class_colors(names)
    assert len(colors) == len(names)
    assert min_delta_e(colors) >= MIN_DELTA_E, list(zip(names, colors, strict=True))


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("water", "water"), ("river and lakes", "water"), ("open water", "water"), ("lake", "water"),
        ("forest", "forest"), ("trees", "forest"), ("vegetation", "vegetation"), ("grassland", "vegetation"),
        ("cropland", "crop"), ("farmland", "crop"), ("built-up", "built"), ("urban area", "built"),
        ("buildings", "built"), ("road", "road"), ("bare soil", "bare"), ("snow and ice", "snow"),
        ("cloud", "cloud"), ("land", "land"), ("wetland", "wetland"), ("none of these", "none"),
        ("no change", "no change"), ("quarry pit", "bare"), ("alpha", None),
    ],
)  # fmt: skip
def test_names_find_their_family(name, family):
    assert family_of(name) == family


def test_colours_follow_meaning():
    water, forest, vegetation, crop, built, soil, snow = class_colors(
        ["water", "forest", "vegetation", "cropland", "built-up", "bare soil", "snow"]
    )
    lightness = {k: hue_of(c)[0] for k, c in [("forest", forest), ("vegetation", vegetation)]}
    assert hue_of(water)[2] < -40  # blue: strongly negative b*
    assert hue_of(forest)[1] < -20 and hue_of(vegetation)[1] < -20  # greens: negative a*
    assert lightness["forest"] < lightness["vegetation"]  # forest the darker green
    assert hue_of(crop)[2] > 50 and hue_of(crop)[0] > 75  # yellow: light, strongly positive b*
    assert hue_of(built)[1] > 50  # red: strongly positive a*
    assert 30 < hue_of(soil)[0] < 60 and hue_of(soil)[2] > 25  # brown: mid-dark, warm
    assert hue_of(snow)[0] > 95  # white


def test_a_second_class_of_one_family_gets_another_shade_of_it():
    water, lakes = class_colors(["water", "lakes"])
    assert water != lakes
    assert hue_of(lakes)[2] < -30  # still blue
