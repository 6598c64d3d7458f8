"""Grounded answers: what the model's own maps say, in a sentence, or a plain statement of what it cannot say.

The language head of the bundled model learned a few answer templates and repeats them whatever is asked
(issue #12). So `rsneo ask` reads the question (a small set of question forms: share, area, presence of a
class, change, description), and answers it from the heads: the segmentation map over the model's trained
classes (the same engine and window plan as `rsneo segment`), or the change map of the first and last date
(as `rsneo change`). A class the model was not trained on, a change question over a single date, and any
other kind of question get an answer that says so instead of a template. A figure read from a map whose input
lies outside the imagery its head was trained on (`rsneo.heads.domain`) carries that caveat in the sentence.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rsneo.data.frames import model_band_groups
from rsneo.errors import InputError
from rsneo.heads.domain import check_inputs, inside
from rsneo.heads.system import System
from rsneo.heads.vocabulary import match_classes
from rsneo.io.areas import format_area
from rsneo.io.vector import class_areas
from rsneo.predict import maps
from rsneo.predict.change_classes import changed_and_compared
from rsneo.predict.inputs import Inputs, layouts_of, open_dates, open_raster_input, reduced
from rsneo.predict.requests import AskRequest
from rsneo.predict.sliding_window import MapSpec, predict_raster

IMAGE_WORDS = r"(?:image|images|area|scene|picture|photo|tile|region|map|view)"
CHANGE = re.compile(
    r"\b(chang\w*|differ\w*|new|appear\w*|disappear\w*|lost|loss|gain\w*|grew|grow\w*|shrank|shrink\w*|"
    r"increas\w*|decreas\w*|expand\w*|removed|demolish\w*|cleared|deforest\w*|since|before and after|"
    r"between)\b"
)
DESCRIBE = re.compile(
    r"\b(describe|description|caption|summari[sz]e|what (?:is|can you see|do you see) (?:in|on)|"
    r"what does (?:this|the) \w+ show|what (?:land cover|kind of land)|what is (?:this|shown))\b"
)
SHARE = (
    rf"(?:how much|what (?:percentage|percent|share|fraction|proportion|part|portion))(?: of)? "
    rf"(?:the |this )?{IMAGE_WORDS} (?:is|are) "
    r"(?:covered (?:by|with|in) |made up of |occupied by )?(?P<t>.+)",
    r"what is the (?P<t>.+?) (?:coverage|cover|share|percentage|fraction|proportion)$",
    rf"(?:what (?:percentage|percent|share|fraction|proportion|part|portion) of (?:the |this )?"
    rf"{IMAGE_WORDS} )(?:does |do )?(?P<t>.+?) (?:cover|occupy|take up|make up)",
    r"(?:what (?:percentage|percent|share|fraction|proportion)|how much) (?:of )?(?P<t>.+?) "
    r"(?:is|are) (?:there|in|on|visible|shown|present)",
    r"(?:how much|what (?:percentage|percent|share|fraction|proportion) of) (?P<t>.+?) "
    r"(?:does|do) (?:the|this) \w+ (?:contain|have|show)",
    r"(?:percentage|percent|share|fraction|proportion|coverage) of (?P<t>.+)",
    r"how much (?P<t>.+)",
)
AREA = (
    r"(?:how (?:large|big|extensive)|what (?:is )?the (?:area|size|extent)|how many (?:hectares|ha|square "
    r"(?:meters|metres|kilometers|kilometres)|km2|pixels)|what area)(?: of| is| are| does| do)?"
    r"(?: the| this)? (?P<t>.+?)(?: is| are)?"
    r"(?: cover| covers| occupy| occupies| take up| in (?:the|this) \w+| there)?$",
)
PRESENCE = (
    r"^(?:is|are) there (?:any |some |a |an )?(?P<t>.+?)(?: in| on| visible)?(?: (?:the|this) \w+)?$",
    r"^(?:does|do) (?:the|this) \w+ (?:contain|show|have|include) (?:any |some |a |an )?(?P<t>.+)$",
    r"^(?:is|are) (?:any |some )(?P<t>.+?) (?:visible|present|shown|there)$",
    r"^can you see (?:any |some |a |an )?(?P<t>.+)$",
)
TRAILING = re.compile(
    rf"\s+(?:in|on|of|within|across) (?:the |this |these )?{IMAGE_WORDS}$|\s+(?:area|areas|cover|coverage)$"
    r"|\s+(?:here|there|in (?:hectares|ha|percent|pixels|square \w+))$"
)
PRESENT_SHARE = 0.5  # percent of the valid pixels above which a class counts as present
BUILDINGS = re.compile(r"(?:buildings?|houses?|homes?|roofs?|construction|built structures?)")


@dataclass(frozen=True)
class Question:
    """What a question asks: `kind` in share, area, presence, change, describe, unsupported."""

    kind: str
    target: str | None = None  # the class phrase asked about, as typed


@dataclass(frozen=True)
class Answer:
    text: str
    kind: str
    value: float | None = None  # the measured percentage behind the sentence, when there is one
    abstained: bool = False  # True when the answer says the model cannot answer this


def _clean_target(text: str) -> str | None:
    text = re.sub(r"\s+", " ", text).strip(" .?!,;:")
    text = re.sub(r"^(?:the|a|an|any|some|of|is|are)\s+", "", text)
    previous = None
    while previous != text:
        previous, text = text, TRAILING.sub("", text).strip()
    return text or None


def parse_question(question: str) -> Question:
    """The kind of a question and the class it asks about (rules: the model learned no other questions)."""
    text = re.sub(r"\s+", " ", question.lower()).strip(" ?!.")
    kind = None
    target = None
    for name, patterns in (("area", AREA), ("presence", PRESENCE), ("share", SHARE)):
        for pattern in patterns:
            match = re.search(pattern, text)
            if match:
                kind, target = name, _clean_target(match.group("t"))
                break
        if kind:
            break
    if CHANGE.search(text):
        return Question("change", _change_target(text) or _before_change_words(target))
    if kind and target:
        return Question(kind, target)
    if DESCRIBE.search(text):
        return Question("describe")
    return Question("unsupported")


def _before_change_words(target: str | None) -> str | None:
    """ "water was lost" -> "water"; "this image changed" -> None (it names no class)."""
    if not target:
        return None
    match = CHANGE.search(target)
    head = target[: match.start()] if match else target
    head = re.sub(r"(?:\s+(?:was|were|is|are|has|have|been|had))+\s*$", "", head.strip())
    head = re.sub(rf"^(?:the |this |these )?{IMAGE_WORDS}$", "", head.strip())
    return _clean_target(head) if head.strip() else None


def _change_target(text: str) -> str | None:
    """ "are there new buildings" -> "buildings"; "how has the forest changed" -> "forest"."""
    for pattern in (r"\bnew (?P<t>[a-z -]+?)(?: (?:since|between|in|appear\w*|were|are|built|constructed|"
                    r"erected|added)\b|$)",
                    r"\bhow (?:has|have|did|do|does) (?:the )?(?P<t>[a-z -]+?) (?:chang\w*|grow\w*|shr\w*)",
                    r"\b(?:more|less|fewer) (?P<t>[a-z -]+?)(?: (?:than|now|since|between)\b|$)",
                    r"\b(?:was|were|is|are|has|have) (?:the |any |some )?(?P<t>[a-z -]+?) (?:been )?"
                    r"(?:lost|gained|removed|added|built|cleared|flooded)\b"):  # fmt: skip
        match = re.search(pattern, text)
        if match:
            return _clean_target(match.group("t"))
    return None


# ---- maps the answers are read from --------------------------------------------------------------------


def _map_areas(spec: MapSpec, inputs: Inputs, out: Path) -> dict[str, float]:
    """Area per class of the engine's map `spec` of `inputs` (a temporary COG at `out`); "" is the valid
    area."""
    cog = predict_raster(
        inputs.windows(), spec, out, crs=inputs.crs, transform=inputs.transform, confidence=False
    )
    return class_areas(cog, spec.legend)


def _shares(
    system: System, inputs: Inputs, classes: list[str], out: Path
) -> tuple[dict[str, float], float, str]:
    """Percent of the valid pixels per class in the segmentation map of one raster, its valid area and the
    area's unit."""
    areas = _map_areas(maps.segmentation_map(system, inputs.layouts[0], classes), inputs, out)
    valid = areas.pop("")
    unit = "px" if inputs.pixel_units else "ha"
    return {k: 100 * v / max(valid, 1e-12) for k, v in areas.items()}, valid, unit


def class_shares(
    system: System, raster: Path, classes: list[str], *, sensor=None, bands=None, max_side: int = 512
) -> tuple[dict[str, float], float, str]:
    """Percent of the valid pixels per class in the model's segmentation map, the valid area and its unit.

    The map is `rsneo segment`'s (same predictor, engine and window plan) over the raster, or over an
    overview when its long side exceeds `max_side`.
    """
    layouts = layouts_of([raster], sensor, bands, model_band_groups(system.config))
    token = system.config.token_size
    with (
        tempfile.TemporaryDirectory() as tmp,
        open_raster_input(raster, layouts[0]) as full,
        reduced(full, max_side, token) as inputs,
    ):
        return _shares(system, inputs, classes, Path(tmp) / "classes.tif")


def first_and_last_shares(
    system: System, rasters: list[Path], classes: list[str], *, sensor=None, bands=None, max_side: int = 512
) -> list[tuple[dict[str, float], float, str]]:
    """`class_shares` of the first and the last date, both on the first date's grid (as the change map sees
    them), so the two shares are of the same ground."""
    ends = [rasters[0], rasters[-1]]
    layouts = layouts_of(ends, sensor, bands, model_band_groups(system.config))
    token = system.config.token_size
    with (
        tempfile.TemporaryDirectory() as tmp,
        open_dates(ends, layouts) as aligned,
        reduced(aligned, max_side, token) as inputs,
    ):
        return [_shares(system, inputs.date(i), classes, Path(tmp) / f"classes{i}.tif") for i in range(2)]


def changed_share(
    system: System,
    rasters: list[Path],
    *,
    sensor=None,
    bands=None,
    max_side: int = 512,
    buildings: bool = False,
    pixel_size: float | None = None,
) -> tuple[float, float, str]:
    """Percent of the compared pixels the change map marks changed, the compared area and its unit.

    The map is `rsneo change`'s (`maps.change_map`: same head, calibration and magnitude combination; same
    engine and window plan) over the aligned dates, or over overviews when the long side exceeds `max_side`.
    With `buildings`, `rsneo change --of buildings`'s new-building map, always at full resolution (its
    scales are metres on the ground).
    """
    layouts = layouts_of(rasters, sensor, bands, model_band_groups(system.config))
    token = system.config.token_size
    with (
        tempfile.TemporaryDirectory() as tmp,
        open_dates(rasters, layouts) as aligned,
        reduced(aligned, None if buildings else max_side, token) as inputs,
    ):
        if buildings:
            spec = maps.building_map(inputs, pixel_size)
        else:
            votes = inside(system, "change", rasters, sensor, bands)  # as `rsneo change` decides it
            spec = maps.change_map(system, inputs, head_votes=votes)
        changed, compared = changed_and_compared(_map_areas(spec, inputs, Path(tmp) / "change.tif"))
    return 100 * changed / max(compared, 1e-12), compared, "px" if inputs.pixel_units else "ha"


# ---- questions -> answers ------------------------------------------------------------------------------


def _resolve(system: System, target: str) -> tuple[list[str], str | None, str]:
    """The classes to map, the one that answers for `target` (None: the model was not trained on it) and how
    the answer says `target` was read ("" when it is that class itself)."""
    matches = match_classes(system, [target])
    if matches is None:  # a folder that records no vocabulary: map the name as typed
        return [target], target, ""
    vocabulary = list(system.vocabulary.names)
    match = matches[0]
    if match.broader:  # a narrower name: the figure is the whole broader class, and the answer says so
        return (
            vocabulary,
            match.nearest,
            (
                f' ("{target}" read as the broader trained class "{match.nearest}": the model cannot tell '
                f"{target} from the rest of {match.nearest})"
            ),
        )
    if not match.trained:
        return vocabulary, None, ""
    if target.lower() == match.nearest.lower():
        return vocabulary, match.nearest, ""
    return vocabulary, match.nearest, f' ("{target}" read as the trained class "{match.nearest}")'


def _untrained(system: System, target: str) -> str:
    known = ", ".join(system.vocabulary.names) if system.vocabulary else "its trained classes"
    return f'The model was not trained to recognise "{target}" (it knows: {known}), so it cannot measure it.'


def _options(request: AskRequest) -> dict:
    """How the maps of an answer read the rasters (`class_shares`, `changed_share`)."""
    return dict(sensor=request.sensor, bands=request.band_list, max_side=request.max_side)


def _caveat(system: System, head: str, rasters: list[Path], request: AskRequest) -> str:
    """The sentence a figure from `head`'s map of `rasters` carries when they lie outside the imagery that
    head was trained on (warned about too), else ""."""
    note = check_inputs(system, head, rasters, sensor=request.sensor, bands=request.band_list)
    return f" Caveat: {note}." if note else ""


def _new_buildings(system: System, request: AskRequest, when: str) -> Answer:
    """ "Are there new buildings?": the share of `rsneo change --of buildings`'s map, or why it cannot."""
    try:
        share, compared, unit = changed_share(
            system, list(request.rasters), buildings=True, pixel_size=request.pixel_size, **_options(request)
        )
    except InputError as exc:
        return Answer(f"New buildings cannot be mapped here: {exc}", "change", abstained=True)
    verdict = "Yes" if share >= PRESENT_SHARE else "No"
    area = format_area(compared, unit)
    return Answer(
        f"{verdict}: new buildings cover about {share:.1f}% of the compared area ({area}){when}, mapped by "
        "the building index of `rsneo change --of buildings` (the model itself was not "
        "trained on buildings).",
        "change",
        share,
    )


def grounded_answer(system: System, request: AskRequest, dates: list[str | None]) -> Answer:
    """Answer `request.question` about `request.rasters` (dates in order) from the model's maps, or say why
    it cannot."""
    asked = parse_question(request.question)
    if asked.kind == "unsupported":
        known = ", ".join(system.vocabulary.names) if system.vocabulary else "its classes"
        return Answer(
            "The model was not trained to answer this kind of question. It can say how much of an image is "
            f"one of the classes it knows ({known}), whether there is any, its area, how much changed "
            "between two dates, and whether there are new buildings (imagery of 2 m or finer).",
            asked.kind,
            abstained=True,
        )
    if asked.kind == "change":
        return _change_answer(system, request, asked, dates)
    if asked.kind == "describe":
        return _description(system, request)
    return _class_answer(system, request, asked, dates)


def _change_answer(system: System, request: AskRequest, asked: Question, dates: list[str | None]) -> Answer:
    """How much changed between the first and the last date, and how a named class changed."""
    rasters = list(request.rasters)
    if len(rasters) < 2:
        return Answer(
            "This question is about change: it needs two or more images of the same place (dates), "
            "and only one was given.",
            asked.kind,
            abstained=True,
        )
    when = f" between {dates[0]} and {dates[-1]}" if dates[0] and dates[-1] else " between these images"
    if asked.target and BUILDINGS.fullmatch(asked.target):
        return _new_buildings(system, request, when)
    share, compared, unit = changed_share(system, rasters, **_options(request))
    text = f"About {share:.0f}% of the compared area ({format_area(compared, unit)}) changed{when}."
    caveat = _caveat(system, "change", rasters, request)
    if asked.target:
        classes, name, read_as = _resolve(system, asked.target)
        if name is None:
            text = (
                f'The model was not trained to recognise "{asked.target}", so it cannot say how it '
                f"changed. {text}{caveat}"
            )
            return Answer(text, asked.kind, share, abstained=True)
        first, last = (
            shares[name]
            for shares, _, _ in first_and_last_shares(system, rasters, classes, **_options(request))
        )
        text += f" {name}{read_as}: {first:.0f}% of the image on the first date, {last:.0f}% on the last."
        caveat += _caveat(system, "segmentation", [rasters[0], rasters[-1]], request)
    return Answer(text + caveat, asked.kind, share)


def _description(system: System, request: AskRequest) -> Answer:
    """The changed share of a series, or the class shares of one image."""
    rasters = list(request.rasters)
    if len(rasters) > 1:
        share, compared, unit = changed_share(system, rasters, **_options(request))
        caveat = _caveat(system, "change", rasters, request)
        return Answer(f"About {share:.0f}% of the compared area changed between the first and last date."
                      f"{caveat}", "describe", share)  # fmt: skip
    if system.vocabulary is None:
        return Answer(
            "This model folder records no trained classes, so the model cannot describe the image.",
            "describe",
            abstained=True,
        )
    shares, _, _ = class_shares(system, rasters[-1], list(system.vocabulary.names), **_options(request))
    parts = [f"{v:.0f}% {k}" for k, v in sorted(shares.items(), key=lambda kv: -kv[1]) if v >= 0.5]
    caveat = _caveat(system, "segmentation", rasters[-1:], request)
    return Answer(f"The model's map of this image: about {', '.join(parts)}.{caveat}", "describe")


def _class_answer(system: System, request: AskRequest, asked: Question, dates: list[str | None]) -> Answer:
    """Share, area or presence of one class in the last image."""
    rasters = list(request.rasters)
    classes, name, read_as = _resolve(system, asked.target)
    if name is None:
        return Answer(_untrained(system, asked.target), asked.kind, abstained=True)
    shares, valid, unit = class_shares(system, rasters[-1], classes, **_options(request))
    share = shares[name]
    on = f" (on {dates[-1]}, the last date)" if len(rasters) > 1 and dates[-1] else ""
    if asked.kind == "area":
        area = share / 100 * valid
        text = f"About {format_area(area, unit)} of {name}{read_as}{on}: {share:.0f}% of the image."
    elif asked.kind == "presence":
        verdict = "Yes" if share >= PRESENT_SHARE else "No"
        text = f"{verdict}: about {share:.1f}% of the image is {name}{read_as}{on}."
    else:
        text = f"About {share:.0f}% of this image is {name}{read_as}{on}."
    return Answer(text + _caveat(system, "segmentation", rasters[-1:], request), asked.kind, share)
