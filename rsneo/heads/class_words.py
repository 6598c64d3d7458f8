"""Other names and short descriptions of the classes the segmentation objective trains, so that the text side
learns that "reservoir" or "bare ground" means what "water" or "land" means.

Where the meanings come from (paraphrased here, nothing copied): the public class definitions of CORINE Land
Cover (level 5 "water bodies": inland waters such as water courses and lakes, and marine waters such as
lagoons, estuaries and the sea), ESA WorldCover ("permanent water bodies": inland water present most of the
year; everything else is a land class) and Dynamic World ("water": water present most of the year, such as
rivers, ponds, lakes, oceans and flooded salt pans; its other classes are land covers). The Sen1Floods11 hand
labels behind the bundled model's "water" class include flood water, so flooded ground counts as water and
"land" is every labelled pixel that is not water.

`CLASS_WORDS` maps a trained class to the names taught as that class (the class word itself first). A name
ends in its head noun, which must not be another class's word or a common word ("flooded area", "not water"
would teach that "area" or "water" means something else: the class vector is the prompt's last token). Some
paraphrases are deliberately left out (`UNTAUGHT_PARAPHRASES`): `benchmarks/vocabulary.py` measures them to
show what the model generalises to from the taught words alone.
"""

from __future__ import annotations

import torch

CLASS_WORDS: dict[str, tuple[str, ...]] = {
    "water": (
        "water",
        # head noun "water": already close to "water" before any teaching
        "open water",
        "surface water",
        "flood water",
        "inland water",
        "standing water",
        "body of water",
        # other head nouns for water, single and plural
        "water body",
        "water bodies",
        "lake",
        "lakes",
        "river",
        "rivers",
        "reservoir",
        "pond",
        "sea",
        "ocean",
        "stream",
        "canal",
        "lagoon",
        "estuary",
        "flood",
        "floodwater",
        "inundation",
        # short descriptions, ending in their head noun (the class vector is the prompt's last token)
        "inland or coastal water",
        "rivers, lakes and the sea",
        "a lake or a river",
        "land under flood water",
    ),
    "land": (
        "land",
        "dry land",
        "ground",
        "dry ground",
        "bare ground",
        "bare soil",
        "soil",
        "terrain",
        "earth",
        "fields",
        "farmland",
        "countryside",
        # short descriptions, ending in their head noun
        "unflooded ground",
        "bare or vegetated ground",
        "fields, forests and towns",
    ),
}

# Narrower classes each trained class contains. A class map made for such a name is the whole broader class
# ("cropland" gives every land pixel, forest and town included; "lake" every water pixel, rivers and sea
# included), so a typed name found here is reported as read as the broader class and counts as untrained
# (flagged, refused by --strict), even where it was taught as an other name of the class. Grouped as the
# CORINE levels and the WorldCover / Dynamic World classes group land covers. Names are compared lowercase
# with single spaces; a trailing "s" (plural) is ignored.
NARROWER: dict[str, tuple[str, ...]] = {
    "water": (
        # water bodies of one kind (CORINE 5.1.x inland, 5.2.x marine)
        "lake", "river", "reservoir", "pond", "sea", "ocean", "stream", "canal", "lagoon", "estuary",
        "water course", "coastal water", "inland water", "standing water", "running water",
        # water of one origin: the Sen1Floods11 class is permanent and flood water together
        "flood", "floodwater", "flood water", "flooded area", "inundation", "flooded land",
        "permanent water", "seasonal water",
    ),
    "land": (
        # agriculture (CORINE 2; WorldCover cropland; Dynamic World crops)
        "cropland", "crop", "crops", "farmland", "farm field", "field", "arable land", "cultivated land",
        "agricultural land", "agriculture", "agricultural area", "paddy", "rice field", "orchard", "vineyard",
        "plantation", "pasture", "countryside",
        # forest and semi-natural areas (CORINE 3; WorldCover tree cover, shrubland, grassland, ...)
        "forest", "woodland", "tree", "tree cover", "vegetation", "grassland", "grass", "meadow",
        "rangeland", "shrubland", "shrub", "scrub", "heath", "moss and lichen",
        "bare ground", "bare soil", "soil", "barren land", "barren", "sand", "beach", "dune", "desert",
        "rock", "snow", "ice", "snow and ice", "glacier",
        # artificial surfaces (CORINE 1; WorldCover built-up; Dynamic World built area)
        "built-up", "built-up area", "built area", "urban", "urban area", "city", "town", "village",
        "settlement", "building", "road", "impervious surface", "industrial area",
        # wetlands (CORINE 4; WorldCover herbaceous wetland, mangroves)
        "wetland", "marsh", "swamp", "bog", "mangrove",
    ),
}  # fmt: skip

# Other names of common land-cover classes, for vocabularies of classes a user teaches (`rsneo learn`): a
# learnt class whose name is one of a group's names is also known by the group's other names, so "city" reads
# as a learnt "built-up" and "farmland" as a learnt "cropland" (and their maps use the learnt class). Grouped
# as the CORINE level-1/2 classes, ESA WorldCover and Dynamic World name the same land cover (paraphrased,
# nothing copied). Names that cover several groups ("vegetation", "land", "nature") are in none. A group two
# learnt classes both belong to ("forest" and "trees" taught apart) lends its names to neither.
LAND_COVER_WORDS: tuple[tuple[str, ...], ...] = (
    ("built-up", "built up", "built-up area", "built area", "urban", "urban area", "urban fabric", "city",
     "town", "settlement", "buildings", "artificial surface", "impervious surface", "developed land"),
    ("cropland", "crops", "farmland", "agricultural land", "agriculture", "arable land", "cultivated land",
     "fields", "farm fields", "crop fields"),
    ("forest", "trees", "tree cover", "woodland", "woods", "rainforest"),
    ("grassland", "grass", "meadow", "pasture", "rangeland", "herbaceous cover"),
    ("shrubland", "shrubs", "scrub", "bushland"),
    ("bare ground", "bare soil", "bare land", "barren land", "barren", "sparse vegetation"),
    ("water", "open water", "surface water", "water body", "water bodies", "body of water"),
    ("wetland", "wetlands", "marsh", "swamp", "herbaceous wetland"),
    ("snow and ice", "snow", "ice", "permanent snow"),
    ("mangroves", "mangrove forest"),
)  # fmt: skip

# Paraphrases measured on held-out data but never taught (benchmarks/vocabulary.py lists them).
UNTAUGHT_PARAPHRASES: tuple[str, ...] = ("river and lakes", "rivers and lakes", "streams and ponds")

# How often a trained class is named by itself rather than by one of its other names, per segmentation step.
CANONICAL_SHARE = 0.5


def class_words(name: str) -> tuple[str, ...]:
    """The names taught for class `name` (itself first); just the name for classes without a list."""
    return CLASS_WORDS.get(name, (name,))


def draw_class_names(names: tuple[str, ...] | list[str], generator: torch.Generator) -> list[str]:
    """One name per class for a segmentation step: the class word itself half the time, else one of its
    other names, drawn with `generator` (the step's seeded generator, so a resumed run draws the same)."""
    out = []
    for name in names:
        words = class_words(name)
        draw = torch.rand((), generator=generator).item()
        index = torch.randint(len(words), (), generator=generator).item()
        out.append(name if draw < CANONICAL_SHARE or len(words) == 1 else words[index])
    return out


def name_key(name: str) -> str:
    """How names are compared: lowercase, single spaces, a plural "s" dropped ("Fields" = "field")."""
    key = " ".join(name.split()).lower()
    return key[:-1] if key.endswith("s") and not key.endswith("ss") and len(key) > 3 else key


def narrower_names(name: str) -> tuple[str, ...]:
    """The narrower classes of trained class `name` (`NARROWER`); none for classes it does not list."""
    return NARROWER.get(name, ())


def land_cover_names(name: str, others: tuple[str, ...] | list[str] = ()) -> tuple[str, ...]:
    """The other names of a learnt class `name` from `LAND_COVER_WORDS` (none when it is in no group, or when
    one of `others`, the other classes of the same vocabulary, is in its group too), `others` left out."""
    key = name_key(name)
    group = next((g for g in LAND_COVER_WORDS if key in {name_key(w) for w in g}), None)
    if group is None:
        return ()
    keys = {name_key(w) for w in group}
    if any(name_key(o) in keys for o in others if name_key(o) != key):
        return ()  # two classes of one group: the group's names would not say which
    return tuple(w for w in group if name_key(w) != key)
