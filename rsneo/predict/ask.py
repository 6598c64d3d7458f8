"""`rsneo ask`: one question over one raster or a time series of rasters, answered from the model's maps.

The question is read by rules (the model learned no other questions): its kind (share, area, presence of a
class, change, description) and the class phrases it names; change questions also their form (how much
changed, what changed, how much X became Y, how much X was added or lost, how X changed). The answer is
grounded (`rsneo.predict.answers`): shares, areas, changed shares and from-to figures are read from the same
segmentation and change maps `rsneo segment` and `rsneo change` write (the engine's products,
`rsneo.predict.maps`), and questions the model cannot answer (a change question over one date, an untrained
class, another kind of question) are answered with what it cannot say, never with a memorised template.
"""

from __future__ import annotations

import re

from rsneo.data.frames import band_layout
from rsneo.errors import InputError
from rsneo.heads.system import System
from rsneo.io.sieve import parse_min_area
from rsneo.predict.answers import BUILDINGS, Answer, Question, grounded_answer
from rsneo.predict.requests import AskRequest

IMAGE_WORDS = r"(?:image|images|area|scene|picture|photo|tile|region|map|view)"
CHANGE = re.compile(
    r"\b(chang\w*|differ\w*|new|appear\w*|disappear\w*|lost|loss|gain\w*|grew|grow\w*|shrank|shrink\w*|"
    r"increas\w*|decreas\w*|expand\w*|removed|demolish\w*|cleared|deforest\w*|since|before and after|"
    r"between|became|become|turned into|converted|added)\b"
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
# change between classes: "how much" (or "what share/area of") ... a class phrase ... the change
HOW_MUCH = (
    r"(?:by )?(?:how much|what (?:area|share|percentage|percent|part|fraction|proportion))(?: of)?(?: the)?"
)
BE = r"(?:(?:was|were|is|are|has been|have been|had been|got|has|have) )?"
CHANGE_FORMS = (
    ("from_to", rf"{HOW_MUCH} (?P<t>.+?) {BE}(?:became|become|turned (?:in)?to|(?:converted|changed|"
                r"transformed|cleared|lost) (?:in)?to|(?:cleared|converted) for|replaced by|gave way to|"
                r"went to) (?:an? |the )?(?P<to>.+)"),
    ("from_to", r"\bfrom (?P<t>[a-z][a-z -]*?) (?:in)?to (?P<to>[a-z][a-z -]*?)(?: (?:between|since|from|in|"
                r"during|over)\b.*)?$"),
    ("gained", rf"{HOW_MUCH} (?:new |additional )?(?P<t>.+?) {BE}(?:added|gained|built|created|appeared|"
               r"expanded|grew|grown|increased|developed|constructed|spread)\b"),
    ("gained", r"how much (?:did|has|have) (?:the )?(?P<t>.+?) (?:grow\w*|expand\w*|increas\w*|gain\w*|"
               r"spread)\b"),
    ("gained", r"how much (?:new|additional|more) (?P<t>.+?)(?: (?:is|are|was|were|has|have|appeared|there)"
               r"\b.*)?$"),
    ("lost", rf"{HOW_MUCH} (?P<t>.+?) {BE}(?:lost|removed|cleared|destroyed|disappeared|shrank|shrunk|"
             r"decreased|deforested|demolished|converted)\b"),
    ("lost", r"how much (?:did|has|have) (?:the )?(?P<t>.+?) (?:shr[iu]nk|decreas\w*|declin\w*|lose|lost)\b"),
    ("net", r"\bhow (?:has|have|did|do|does) (?:the )?(?P<t>[a-z -]+?) (?:chang\w*|grow\w*|shr\w*)"),
    ("buildings", r"\bnew (?P<t>[a-z -]+?)(?: (?:since|between|in|appear\w*|were|are|built|constructed|"
                  r"erected|added)\b|$)"),
    ("lost", r"\b(?:was|were|is|are|has|have) (?:the |any |some )?(?P<t>[a-z -]+?) (?:been )?"
             r"(?:lost|removed|cleared)\b"),
    ("gained", r"\b(?:was|were|is|are|has|have) (?:the |any |some )?(?P<t>[a-z -]+?) (?:been )?"
               r"(?:gained|added|built|flooded)\b"),
)  # fmt: skip
SUMMARY = re.compile(
    r"\bwhat (?:has |have )?chang|\bwhich (?:areas?|parts?|classes) (?:have |has )?chang|\bdescribe the chang"
    r"|\bwhat (?:are|were) the (?:main )?changes|\bsummari[sz]e the chang|\bfrom-to\b"
)
WHEN = re.compile(r"\s+(?:between|since|by|during|over|after|before|from|in (?:the )?\d{4})\b.*$")


def _clean_target(text: str | None) -> str | None:
    """A class phrase as typed, without articles, trailing image words and times ("between the dates")."""
    if text is None:
        return None
    text = re.sub(r"\s+", " ", text).strip(" .?!,;:")
    text = re.sub(r"^(?:the|a|an|any|some|of|is|are)\s+", "", text)
    previous = None
    while previous != text:
        previous, text = text, TRAILING.sub("", text).strip()
    text = re.sub(rf"^(?:the |this |these )?{IMAGE_WORDS}$", "", text)
    return text or None


def parse_question(question: str) -> Question:
    """The kind of a question, the class phrases it asks about and, for change, its form (rules: the model
    learned no other questions)."""
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
        return _change_question(text, target)
    if kind and target:
        return Question(kind, target)
    if DESCRIBE.search(text):
        return Question("describe")
    return Question("unsupported")


def _change_question(text: str, target: str | None) -> Question:
    """A change question's form and class phrases; no class named: how much changed, or what changed."""
    for form, pattern in CHANGE_FORMS:
        match = re.search(pattern, text)
        if not match:
            continue
        phrase = _clean_target(WHEN.sub("", match.group("t")))
        to = _clean_target(WHEN.sub("", match.group("to"))) if "to" in match.groupdict() else None
        if phrase and (to or form != "from_to"):
            if form == "buildings" and not BUILDINGS.fullmatch(phrase):
                form = "gained"  # "is there new cropland?": how much became cropland
            return Question("change", phrase, form, to)
    if SUMMARY.search(text):
        return Question("change", None, "summary")
    return Question("change", _before_change_words(target), "share")


def _before_change_words(target: str | None) -> str | None:
    """ "water was lost" -> "water"; "this image changed" -> None (it names no class)."""
    if not target:
        return None
    match = CHANGE.search(target)
    head = target[: match.start()] if match else target
    head = re.sub(r"(?:\s+(?:was|were|is|are|has|have|been|had))+\s*$", "", head.strip())
    return _clean_target(head) if head.strip() else None


def check_request(request: AskRequest) -> None:
    """The mistakes a request can hold before any raster or model is read (InputError naming the option)."""
    if not request.question.strip():
        raise InputError("ask: expected a question, got an empty string")
    if not request.rasters:
        raise InputError("ask: expected one or more rasters before the question")
    if request.max_side < 0:
        raise InputError(
            f"--max-side: expected 0 (full resolution) or a number of pixels, got {request.max_side}"
        )
    parse_min_area(request.min_area)


def ask(system: System, request: AskRequest) -> Answer:
    """The grounded answer to `request.question` about `request.rasters` (dates in order), with its kind and
    measured value.

    Maps are computed on each raster, or on an overview of at most `max_side` pixels a side when larger (0:
    full resolution; new buildings: always at full resolution, `pixel_size` metres per pixel when there is no
    georeference), sieved by `min_area` as the products sieve.
    """
    check_request(request)
    dates = []
    for raster in request.rasters:
        if not raster.exists():
            raise InputError(f"{raster}: file not found")
        dates.append(band_layout(raster, request.sensor, request.band_list).date)
    return grounded_answer(system, request, parse_question(request.question), dates)
