"""Class colours a map reader can trust: meaning first (water blue, forest green), then plain distinctness.

A class name is matched to a colour family by its words (the last matching word wins, since the head noun
of an English class name comes last: "flooded vegetation" is vegetation, "river and lakes" is water). Each
family offers a few shades; a class takes the first shade that is far enough, in CIELAB, from every colour
already given. Names of no family (and classes whose family ran out of distinct shades) take, from a
qualitative palette, the colour farthest from those already given. Distances are CIE76 delta-E: about 2.3 is
the smallest difference people notice side by side; `MIN_DELTA_E` keeps map classes apart at a glance.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

RGB = tuple[int, int, int]

MIN_DELTA_E = 20.0  # CIE76; two classes at least this far apart read as different colours on a map

# Family -> (words that name it, shades in order of preference). A word matches a name's word that starts
# with it ("lakes", "buildings", "farmland", "agricultural").
FAMILIES: tuple[tuple[str, tuple[str, ...], tuple[RGB, ...]], ...] = (
    ("no change", ("no change", "unchanged"), ((30, 30, 30),)),
    ("none", ("none of these", "unknown", "unclassified", "other", "background"), ((130, 130, 130),)),
    (
        "water",
        ("water", "river", "lake", "sea", "ocean", "reservoir", "pond", "stream", "canal", "flood", "lagoon"),
        ((30, 110, 220), (0, 175, 240), (20, 50, 150), (110, 160, 255)),
    ),
    ("wetland", ("wetland", "marsh", "swamp", "mangrove", "bog", "peat"), ((50, 160, 150), (0, 120, 120))),
    ("forest", ("forest", "tree", "wood", "jungle", "orchard", "plantation"), ((25, 110, 40), (0, 70, 30))),
    (
        "vegetation",
        ("vegetation", "vegetated", "grass", "meadow", "pasture", "shrub", "scrub", "bush", "green", "park"),
        ((110, 190, 70), (170, 220, 120), (140, 150, 40), (60, 150, 90)),
    ),
    (
        "crop",
        ("crop", "farm", "agricultur", "cultivat", "arable", "field", "paddy", "rice", "vineyard"),
        ((240, 205, 50), (255, 235, 130), (200, 160, 0)),
    ),
    (
        "built",
        (
            "built",
            "urban",
            "building",
            "house",
            "settlement",
            "city",
            "town",
            "residential",
            "industrial",
            "commercial",
            "impervious",
            "roof",
            "construction",
        ),
        ((215, 35, 35), (150, 20, 60), (255, 120, 110)),
    ),  # fmt: skip
    ("road", ("road", "street", "highway", "railway", "paved", "parking", "asphalt"), ((80, 80, 80),)),
    ("bare", ("bare", "soil", "barren", "rock", "quarry", "mine", "dirt"), ((150, 100, 50), (110, 70, 40))),
    ("sand", ("sand", "desert", "beach", "dune"), ((230, 205, 145),)),
    ("snow", ("snow", "ice", "glacier", "frost"), ((250, 250, 250), (170, 210, 255))),
    ("cloud", ("cloud", "haze"), ((250, 250, 250), (185, 185, 190))),
    ("shadow", ("shadow",), ((25, 25, 50),)),
    ("change", ("change", "changed", "new", "loss", "gain"), ((255, 50, 150),)),
    ("land", ("land", "ground", "terrain"), ((205, 185, 135), (175, 150, 95))),
)

# Qualitative fallback: saturated and mid-tone hues of different lightness, chosen for distinctness.
QUALITATIVE: tuple[RGB, ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40),
    (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128),
    (255, 225, 25), (100, 100, 100), (0, 0, 0), (255, 255, 255),
)  # fmt: skip


def lab(rgb: Sequence[RGB] | np.ndarray) -> np.ndarray:
    """sRGB 0..255 (N, 3) -> CIELAB (N, 3), D65 white."""
    c = np.asarray(rgb, dtype=np.float64).reshape(-1, 3) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = linear @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def delta_e(a: RGB, b: RGB) -> float:
    """CIE76 colour difference of two sRGB colours."""
    la, lb = lab([a, b])
    return float(np.linalg.norm(la - lb))


def min_delta_e(colors: Sequence[RGB]) -> float:
    """The smallest pairwise delta-E among `colors` (inf for fewer than two)."""
    if len(colors) < 2:
        return float("inf")
    points = lab(colors)
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    return float(d[np.triu_indices(len(colors), 1)].min())


def _words(name: str) -> list[str]:
    return re.findall(r"[a-z]+", name.lower())


def family_of(name: str) -> str | None:
    """The colour family a class name belongs to, or None (phrases first, then the last matching word)."""
    lower = " ".join(_words(name))
    for family, words, _ in FAMILIES:
        if any(" " in w and (lower == w or lower.startswith(w + " ")) for w in words):
            return family
    found = None
    for word in _words(name):
        for family, words, _ in FAMILIES:
            if family != "land" and any(" " not in w and word.startswith(w) for w in words):
                found = family
                break
        else:
            if word == "land":  # whole word only: "wetland", "grassland", "farmland" have their own families
                found = "land"
    return found


def _distance_to(chosen: list[RGB], candidate: RGB) -> float:
    return min((delta_e(candidate, c) for c in chosen), default=float("inf"))


def class_colors(names: Sequence[str]) -> tuple[RGB, ...]:
    """One colour per class name: its family's first shade far enough from the others, else a distinct one."""
    shades = {family: colours for family, _, colours in FAMILIES}
    chosen: list[RGB] = []
    for name in names:
        family = family_of(name)
        colour = None
        for shade in shades.get(family, ()):
            if _distance_to(chosen, shade) >= MIN_DELTA_E:
                colour = shade
                break
        if colour is None:
            pool = [c for c in QUALITATIVE if c not in chosen] or list(QUALITATIVE)
            colour = max(pool, key=lambda c: _distance_to(chosen, c))  # first of equals: stable order
        chosen.append(colour)
    return tuple(chosen)
