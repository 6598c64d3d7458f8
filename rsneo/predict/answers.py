"""Grounded answers: what the model's own maps say, in a sentence, or a plain statement of what it cannot say.

The language head of the bundled model learned a few answer templates and repeats them whatever is asked
(issue #12). So `rsneo ask` reads the question (`rsneo.predict.ask.parse_question`) and answers it from the
heads: the segmentation map over the model's trained classes (the engine and window plan of `rsneo
segment`), or the change map of the first and last date (as `rsneo change`). Questions of change between
classes ("how much cropland became built-up", "how much built-up area was added", "what changed") are read
from the from-to table of that change map with the model's trained classes, the table `rsneo change
--classes` writes, and the answer names it. A class the model was not trained on, a change question over a
single date, and any other kind of question get an answer that says so instead of a figure. A figure read
from an overview (rasters larger than `--max-side`) says at what resolution it was mapped; a figure from a
map whose input lies outside the imagery its head was trained on (`rsneo.heads.domain`) carries that caveat.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rsneo.data.frames import model_band_groups
from rsneo.errors import InputError
from rsneo.heads.domain import check_inputs, inside
from rsneo.heads.system import System
from rsneo.heads.vocabulary import match_classes
from rsneo.io.areas import format_area
from rsneo.io.sieve import parse_min_area
from rsneo.io.vector import class_areas
from rsneo.predict import maps
from rsneo.predict.change_classes import MAX_FROM_TO_CLASSES, changed_and_compared
from rsneo.predict.change_outputs import ChangeTotals
from rsneo.predict.inputs import Inputs, layouts_of, open_dates, open_raster_input, reduced
from rsneo.predict.requests import AskRequest
from rsneo.predict.sliding_window import MapSpec, predict_raster

PRESENT_SHARE = 0.5  # percent of the valid pixels above which a class counts as present
BUILDINGS = re.compile(r"(?:buildings?|houses?|homes?|roofs?|construction|built structures?)")
ARROW = " → "  # a from-to class of the change map: "cropland → built-up"


@dataclass(frozen=True)
class Question:
    """What a question asks: `kind` in share, area, presence, change, describe, unsupported.

    Change questions have a `form`: "share" (how much changed), "summary" (what changed), "from_to" (how
    much `target` became `to`), "gained" / "lost" (how much became / stopped being `target`), "net" (how
    `target` changed), "buildings" (are there new buildings)."""

    kind: str
    target: str | None = None  # the class phrase asked about, as typed
    form: str = ""
    to: str | None = None  # from-to: the class phrase it became


@dataclass(frozen=True)
class Answer:
    text: str
    kind: str
    value: float | None = None  # the measured percentage behind the sentence, when there is one
    abstained: bool = False  # True when the answer says the model cannot answer this


# ---- maps the answers are read from --------------------------------------------------------------------


@contextlib.contextmanager
def _opened(
    system: System, rasters: Sequence[Path], request: AskRequest, whole: bool = False
) -> Iterator[tuple[Inputs, Path, str]]:
    """The rasters as the products open them (one raster on its grid, or dates on the first's), reduced to
    `request.max_side` (0 or `whole`: full resolution), a temporary folder for the maps, and the sentence
    saying at what resolution they are mapped ("" at full resolution)."""
    layouts = layouts_of(rasters, request.sensor, request.bands, model_band_groups(system.config))
    one = len(rasters) == 1
    opener = open_raster_input(rasters[0], layouts[0]) if one else open_dates(rasters, layouts)
    side = None if whole or not request.max_side else request.max_side
    with (
        tempfile.TemporaryDirectory() as tmp,
        opener as full,
        reduced(full, side, system.config.token_size) as inputs,
    ):
        yield inputs, Path(tmp), _resolution(full, inputs, "change" if len(rasters) > 1 else "segment")


def _resolution(full: Inputs, used: Inputs, product: str) -> str:
    """ " Mapped at 512 x 277 pixels (...)." when `used` is an overview of `full`, else ""."""
    (ref, small) = full.datasets[0], used.datasets[0]
    if (small.width, small.height) == (ref.width, ref.height):
        return ""
    return (
        f" Mapped at {small.width} x {small.height} pixels, an overview of the {ref.width} x {ref.height} "
        f"of the rasters: `rsneo {product}` maps them whole (`--max-side 0` gives its figures)."
    )


def _map(spec: MapSpec, inputs: Inputs, out: Path, request: AskRequest) -> Path:
    """The engine's map `spec` of `inputs` (a temporary COG at `out`), sieved as the products sieve."""
    return predict_raster(
        inputs.windows(), spec, out, crs=inputs.crs, transform=inputs.transform, confidence=False,
        plan=request.plan, min_area=parse_min_area(request.min_area),
    )  # fmt: skip


def class_shares(
    system: System, request: AskRequest, raster: Path, classes: list[str]
) -> tuple[dict[str, float], float, str, str]:
    """Percent of the valid pixels per class in the model's segmentation map of `raster` (`rsneo segment`'s
    map: same predictor, engine, window plan and sieve), the valid area, its unit and the resolution
    sentence."""
    with _opened(system, [raster], request) as (inputs, tmp, resolution):
        spec = maps.segmentation_map(system, inputs.layouts[0], classes)
        areas = class_areas(_map(spec, inputs, tmp / "classes.tif", request), spec.legend)
    valid = areas.pop("")
    shares = {k: 100 * v / max(valid, 1e-12) for k, v in areas.items()}
    return shares, valid, "px" if inputs.pixel_units else "ha", resolution


def changed_share(
    system: System, request: AskRequest, buildings: bool = False
) -> tuple[float, float, str, str]:
    """Percent of the compared pixels the change map marks changed, the compared area, its unit and the
    resolution sentence.

    The map is `rsneo change`'s (`maps.change_map`: same head, calibration and magnitude combination; same
    engine, window plan and sieve). With `buildings`, `rsneo change --of buildings`'s new-building map,
    always at full resolution (its scales are metres on the ground).
    """
    rasters = list(request.rasters)
    with _opened(system, rasters, request, whole=buildings) as (inputs, tmp, resolution):
        if buildings:
            spec = maps.building_map(inputs, request.pixel_size)
        else:
            votes = inside(system, "change", rasters, request.sensor, request.band_list)  # as `change` does
            spec = maps.change_map(system, inputs, head_votes=votes)
        changed, compared = changed_and_compared(class_areas(_map(spec, inputs, tmp / "c.tif", request)))
    unit = "px" if inputs.pixel_units else "ha"
    return 100 * changed / max(compared, 1e-12), compared, unit, resolution


def change_table(system: System, request: AskRequest, classes: list[str]) -> tuple[ChangeTotals, str]:
    """The from-to table of the change map of the first and last date with `classes` (what `rsneo change
    --classes` writes as change_table.csv: same map, same totals) and the resolution sentence."""
    rasters = list(request.rasters)
    votes = inside(system, "change", rasters, request.sensor, request.band_list)
    with _opened(system, rasters, request) as (inputs, tmp, resolution):
        spec = maps.change_map(system, inputs, classes, head_votes=votes)
        cog = _map(spec, inputs, tmp / "change.tif", request)
        return ChangeTotals.of_map(cog, spec.legend, inputs.pixel_units), resolution


# ---- reading a question's class names --------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """A class phrase as the model reads it: the class that answers for it (None: not trained on it) and
    how the answer says so ("" when it is that class itself)."""

    typed: str
    name: str | None
    said: str = ""


def read_targets(system: System, targets: list[str]) -> tuple[list[str], list[Reading]]:
    """The classes to map (the model's trained classes; the phrases as typed when its folder records none)
    and how each phrase is read."""
    matches = match_classes(system, targets)
    if matches is None:  # a folder that records no vocabulary: map the names as typed
        return list(dict.fromkeys(targets)), [Reading(t, t) for t in targets]
    readings = []
    for target, match in zip(targets, matches, strict=True):
        if match.broader:  # a narrower name: the figure is the whole broader class, and the answer says so
            said = (
                f' ("{target}" read as the broader trained class "{match.nearest}": the model cannot tell '
                f"{target} from the rest of {match.nearest})"
            )
            readings.append(Reading(target, match.nearest, said))
        elif not match.trained:
            readings.append(Reading(target, None))
        elif target.lower() == match.nearest.lower():
            readings.append(Reading(target, match.nearest))
        else:
            said = f' ("{target}" read as the trained class "{match.nearest}")'
            readings.append(Reading(target, match.nearest, said))
    return list(system.vocabulary.names), readings


def _untrained(system: System, target: str, what: str = "so it cannot measure it") -> str:
    known = ", ".join(system.vocabulary.names) if system.vocabulary else "its trained classes"
    return f'The model was not trained to recognise "{target}" (it knows: {known}), {what}.'


def _caveat(system: System, head: str, rasters: list[Path], request: AskRequest) -> str:
    """The sentence a figure from `head`'s map of `rasters` carries when they lie outside the imagery that
    head was trained on (warned about too), else ""."""
    note = check_inputs(system, head, rasters, sensor=request.sensor, bands=request.band_list)
    return f" Caveat: {note}." if note else ""


# ---- questions -> answers ------------------------------------------------------------------------------


def grounded_answer(system: System, request: AskRequest, asked: Question, dates: list[str | None]) -> Answer:
    """Answer `asked` (the parsed `request.question`) about `request.rasters` (dates in order) from the
    model's maps, or say why it cannot."""
    if asked.kind == "unsupported":
        known = ", ".join(system.vocabulary.names) if system.vocabulary else "its classes"
        return Answer(
            "The model was not trained to answer this kind of question. It can say how much of an image is "
            f"one of the classes it knows ({known}), whether there is any, its area, how much changed "
            "between two dates and between which classes, and whether there are new buildings (imagery of "
            "2 m or finer).",
            asked.kind,
            abstained=True,
        )
    if asked.kind == "change":
        return _change_answer(system, request, asked, dates)
    if asked.kind == "describe":
        return _description(system, request)
    return _class_answer(system, request, asked, dates)


def _new_buildings(system: System, request: AskRequest, when: str) -> Answer:
    """ "Are there new buildings?": the share of `rsneo change --of buildings`'s map, or why it cannot."""
    try:
        share, compared, unit, _ = changed_share(system, request, buildings=True)
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


def _change_answer(system: System, request: AskRequest, asked: Question, dates: list[str | None]) -> Answer:
    """How much changed between the first and the last date; between which classes (the from-to table)."""
    rasters = list(request.rasters)
    if len(rasters) < 2:
        return Answer(
            "This question is about change: it needs two or more images of the same place (dates), "
            "and only one was given.",
            asked.kind,
            abstained=True,
        )
    when = f" between {dates[0]} and {dates[-1]}" if dates[0] and dates[-1] else " between these images"
    if asked.target and BUILDINGS.fullmatch(asked.target) and asked.form in ("buildings", "gained"):
        return _new_buildings(system, request, when)
    caveat = _caveat(system, "change", rasters, request)
    # "what changed" reads the table of every trained class: none recorded, or more than a table holds,
    # and it is the changed share alone
    summary = asked.form == "summary" and 0 < len(_vocabulary(system)) < MAX_FROM_TO_CLASSES
    if asked.form == "share" or (not asked.target and not summary):
        share, compared, unit, resolution = changed_share(system, request)
        text = f"About {share:.2f}% of the compared area ({format_area(compared, unit)}) changed{when}."
        return Answer(text + resolution + caveat, asked.kind, share)
    return _table_answer(system, request, asked, when, caveat)


def _table_answer(system: System, request: AskRequest, asked: Question, when: str, caveat: str) -> Answer:
    """A change question between classes, read from the from-to table of the change map."""
    targets = [t for t in (asked.target, asked.to) if t]
    classes, readings = read_targets(system, targets) if targets else (_vocabulary(system), [])
    for reading in readings:
        if reading.name is None:
            return Answer(
                _untrained(system, reading.typed, f"so it cannot say how it changed{when}"), "change",
                abstained=True,
            )  # fmt: skip
    if len(readings) == 2 and readings[0].name == readings[1].name:
        a, b = readings
        return Answer(
            f'"{a.typed}" and "{b.typed}" are both read as the trained class "{a.name}": the model cannot '
            "tell them apart, so it cannot say how much of one became the other.",
            "change",
            abstained=True,
        )
    if len(classes) >= MAX_FROM_TO_CLASSES:  # the table holds at most 14 classes: the ones asked about
        classes = list(dict.fromkeys(r.name for r in readings))
    totals, resolution = change_table(system, request, classes)
    source = (
        f' Read from the from-to table of the change map with classes "{", ".join(classes)}" (the '
        f'change_table.csv of `rsneo change --classes "{", ".join(classes)}"`)'
        + (f"; {resolution.strip()}" if resolution else ", at full resolution, as `rsneo change` maps it.")
    )
    caveat += _caveat(system, "segmentation", [request.rasters[0], request.rasters[-1]], request)
    text, value = _from_table(totals, asked, readings, when)
    return Answer(text + source + caveat, "change", value)


def _vocabulary(system: System) -> list[str]:
    return list(system.vocabulary.names) if system.vocabulary is not None else []


def _between(totals: ChangeTotals, before: str | None = None, after: str | None = None) -> list:
    """(from, to, area) of the table's rows between two different classes, `before` / `after` if given."""
    rows = []
    for name, area in totals.rows:
        a, arrow, b = name.partition(ARROW)
        if arrow and a != b and before in (None, a) and after in (None, b):
            rows.append((a, b, area))
    return sorted(rows, key=lambda row: -row[2])


def _from_table(
    totals: ChangeTotals, asked: Question, readings: list[Reading], when: str
) -> tuple[str, float]:
    """The sentence and the percentage of the compared area a change question asks for."""
    unit, compared = totals.unit, max(totals.compared, 1e-12)

    def part(rows: list) -> tuple[float, str]:  # "3.10% of the compared area (1,981.00 ha)"
        area = sum(r[2] for r in rows)
        return (
            100 * area / compared,
            f"{100 * area / compared:.2f}% of the compared area ({format_area(area, unit)})",
        )

    def largest(rows: list) -> str:
        items = [f"{a}{ARROW}{b} {100 * area / compared:.2f}%" for a, b, area in rows[:3]]
        return f" (largest: {', '.join(items)})" if items else ""

    if asked.form == "summary":
        share, changed = 100 * totals.changed / compared, format_area(totals.changed, unit)
        rows = _between(totals)
        moved = f"; between classes: {part(rows)[1]}{largest(rows)}" if rows else "; none of it changed class"
        return f"About {share:.2f}% of the compared area ({changed}) changed{when}{moved}.", share
    first = readings[0]
    x = f"{first.name}{first.said}"
    if asked.form == "from_to":
        second = readings[1]
        value, said = part(_between(totals, first.name, second.name))
        return f"About {said} changed from {x} to {second.name}{second.said}{when}.", value
    gained, lost = _between(totals, after=first.name), _between(totals, before=first.name)
    if asked.form == "gained":
        value, said = part(gained)
        return f"About {said} became {x}{when}{largest(gained)}.", value
    if asked.form == "lost":
        value, said = part(lost)
        return f"About {said} changed from {x} to another class{when}{largest(lost)}.", value
    (g, gain), (lo, loss) = part(gained), part(lost)
    net = g - lo
    return (
        f"{when.strip().capitalize()}, {gain} became {x} and {loss} changed from {first.name} to another "
        f"class: a net {'gain' if net >= 0 else 'loss'} of {abs(net):.2f}% of the compared area.",
        net,
    )


def _description(system: System, request: AskRequest) -> Answer:
    """The changed share of a series, or the class shares of one image."""
    rasters = list(request.rasters)
    if len(rasters) > 1:
        share, compared, unit, resolution = changed_share(system, request)
        caveat = _caveat(system, "change", rasters, request)
        return Answer(f"About {share:.2f}% of the compared area changed between the first and last date."
                      f"{resolution}{caveat}", "describe", share)  # fmt: skip
    if system.vocabulary is None:
        return Answer(
            "This model folder records no trained classes, so the model cannot describe the image.",
            "describe",
            abstained=True,
        )
    shares, _, _, resolution = class_shares(system, request, rasters[-1], _vocabulary(system))
    parts = [f"{v:.0f}% {k}" for k, v in sorted(shares.items(), key=lambda kv: -kv[1]) if v >= 0.5]
    caveat = _caveat(system, "segmentation", rasters[-1:], request)
    return Answer(f"The model's map of this image: about {', '.join(parts)}.{resolution}{caveat}", "describe")


def _class_answer(system: System, request: AskRequest, asked: Question, dates: list[str | None]) -> Answer:
    """Share, area or presence of one class in the last image."""
    rasters = list(request.rasters)
    classes, (reading,) = read_targets(system, [asked.target])
    if reading.name is None:
        return Answer(_untrained(system, asked.target), asked.kind, abstained=True)
    shares, valid, unit, resolution = class_shares(system, request, rasters[-1], classes)
    name, read_as = reading.name, reading.said
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
    caveat = _caveat(system, "segmentation", rasters[-1:], request)
    return Answer(text + resolution + caveat, asked.kind, share)
