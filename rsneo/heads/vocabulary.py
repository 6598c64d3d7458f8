"""What a model folder was trained to recognise, and how close a typed class name is to it.

`vocabulary.json` in a model folder records the classes and prompts the segmentation head was trained on, the
other names each class was taught under (`synonyms`, see `rsneo.heads.class_words`) and the held-out score of
each (where it was measured). A typed class name is compared with every trained class in the model's own text
space: the backbone's last-token state of the class prompt, the very vector the segmentation head reads
(cosine similarity; a class is as close as its nearest taught name). A class learnt by `rsneo learn` has its
own vector and a name the text side was never taught, so only its name and other names read as it. A name
whose nearest trained class is less similar than the folder's `match_threshold` is "untrained": the model was
never taught it, so its map is arbitrary. A name listed as narrower than a trained class (`narrower`, from
`rsneo.heads.class_words.NARROWER`: "cropland" in "land", "lake" in "water") is read as that broader class, so
its map is the whole broader class: it counts as untrained too. A folder whose text side knows nothing but
the names it was taught (`taught_pieces_only`: a model without language pre-training, such as the bundled
one) also calls untrained any name with a word piece no taught name contains, however close its vector: such
a model never read "forest", and the state of a word it never read can land anywhere, even on "water".
Commands say so (a warning, "(read as land, broader; untrained)" or "(untrained)" in legends, tags and
reports) and `strict` refuses such names; a name read as a class it means (a taught other name, a close
paraphrase) is reported with what it was read as.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from rsneo import atomic
from rsneo.errors import InputError, RSNeoWarning
from rsneo.heads.class_words import CLASS_WORDS, name_key, narrower_names
from rsneo.heads.prompt_cache import prompt_vectors

VOCABULARY_JSON = "vocabulary.json"
# On the first bundled model, taught names and names ending in a taught word ("open water", "river and lakes",
# "dry land") sat at cosine >= 0.98 from their class; every untaught name tried ("streams and ponds",
# "forest", "urban area", "banana") at <= 0.91 (benchmarks/vocabulary.py prints them). 0.95 sat in that gap.
# The retrained one puts single untaught words at 0.98 from "water" too: its vocabulary also checks word
# pieces (`taught_pieces_only`), the cosine alone cannot tell there.
DEFAULT_MATCH_THRESHOLD = 0.95


class UntrainedClassWarning(RSNeoWarning):
    """A class name the model was never trained on: its map is not to be trusted."""


@dataclass(frozen=True)
class TrainedClass:
    name: str
    prompts: tuple[str, ...]
    held_out: dict = field(default_factory=dict)  # {"iou": float, "data": "what it was measured on"}
    synonyms: tuple[str, ...] = ()  # other names taught as this class ("lake", "reservoir", ...)
    narrower: tuple[str, ...] = ()  # narrower classes it contains: typed, they read as this broader class
    # a class the text side was never taught (learnt by `rsneo learn`, its own vector): only its name and
    # other names read as it, as closeness to an untaught name in the text space means nothing
    by_name_only: bool = False


@dataclass(frozen=True)
class Vocabulary:
    classes: tuple[TrainedClass, ...]
    match_threshold: float = DEFAULT_MATCH_THRESHOLD
    note: str = ""
    # the text side learnt only the word pieces of its taught names (no language pre-training): a name with
    # any other piece is untrained whatever its cosine
    taught_pieces_only: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)


@dataclass(frozen=True)
class ClassMatch:
    """A typed name, its nearest trained class and their cosine similarity in the model's text space.

    `broader`: the name is a narrower class of `nearest` (its map is all of `nearest`); such a name is not
    `trained`. `read_as`: the trained class the name is read as, when that is not the name itself."""

    name: str
    nearest: str
    similarity: float
    trained: bool
    broader: bool = False
    unseen: tuple[str, ...] = ()  # word pieces no taught name contains (`Vocabulary.taught_pieces_only`)

    @property
    def read_as(self) -> str | None:
        if name_key(self.name) == name_key(self.nearest) or not (self.trained or self.broader):
            return None
        return self.nearest

    @property
    def reading(self) -> str | None:
        """What legends and reports say after the name: "read as land, broader" or "read as water"."""
        if self.read_as is None:
            return None
        return f"read as {self.read_as}, broader" if self.broader else f"read as {self.read_as}"


@dataclass(frozen=True)
class ClassReadings:
    """How a run reads its typed class names: those to flag as untrained, and what each was read as."""

    untrained: tuple[str, ...] = ()
    read_as: dict[str, str] = field(default_factory=dict)  # typed name -> "read as land, broader"


def load_vocabulary(folder: Path | None) -> Vocabulary | None:
    """The folder's vocabulary, or None when it records none (older folders, random test models)."""
    path = Path(folder) / VOCABULARY_JSON if folder is not None else None
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        classes = tuple(
            TrainedClass(
                c["name"],
                tuple(c.get("prompts", ())),
                dict(c.get("held_out", {})),
                tuple(str(w) for w in c.get("synonyms", ())),
                tuple(str(w) for w in c.get("narrower", narrower_names(c["name"]))),
                bool(c.get("by_name_only", False)),
            )
            for c in data["classes"]
        )
        threshold = float(data.get("match_threshold", DEFAULT_MATCH_THRESHOLD))
        pieces_only = bool(data.get("taught_pieces_only", False))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"{path}: expected a vocabulary with a list of classes, could not read it ({exc})"
        ) from None
    if not classes:
        raise InputError(f"{path}: expected at least one trained class, found none")
    return Vocabulary(classes, threshold, str(data.get("note", "")), pieces_only)


def save_vocabulary(folder: Path, vocabulary: Vocabulary) -> Path:
    """Write `vocabulary.json` into `folder` (hidden name, then rename)."""
    path = Path(folder) / VOCABULARY_JSON
    data = {
        "classes": [
            asdict(c)
            | {"prompts": list(c.prompts), "synonyms": list(c.synonyms), "narrower": list(c.narrower)}
            for c in vocabulary.classes
        ],
        "match_threshold": vocabulary.match_threshold,
        "note": vocabulary.note,
        "taught_pieces_only": vocabulary.taught_pieces_only,
    }
    atomic.write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return path


def vocabulary_for_classes(
    classes: list[str] | tuple[str, ...],
    prompt_template: str,
    note: str = "",
    words: dict[str, tuple[str, ...]] | None = None,
) -> Vocabulary:
    """The vocabulary of a run that trained `classes`: each with its prompts and the other names it was taught
    under (`words`, default `rsneo.heads.class_words.CLASS_WORDS`); held-out scores are not known yet."""
    words = CLASS_WORDS if words is None else words
    out = []
    for name in classes:
        taught = tuple(w for w in words.get(name, (name,)) if w != name)
        prompts = tuple(prompt_template.format(w) for w in (name, *taught))
        out.append(TrainedClass(name, prompts, {}, taught, narrower_names(name)))
    if not note:
        taught = [f"{c.name} ({len(c.synonyms)} other names)" for c in out]
        note = (
            f"Segmentation trained on {', '.join(taught)}. Names close to none of them are read by the same "
            "text path but were never taught. Held-out scores: benchmarks/vocabulary.py --write."
        )
    return Vocabulary(tuple(out), DEFAULT_MATCH_THRESHOLD, note)


@torch.inference_mode()
def match_classes(system, names: list[str]) -> list[ClassMatch] | None:
    """Each name's nearest trained class (cosine of prompt states); None when the folder has no vocabulary."""
    vocabulary = getattr(system, "vocabulary", None)
    if vocabulary is None:
        return None
    trained = list(vocabulary.names)
    taught = [(k, w) for k, c in enumerate(vocabulary.classes) for w in (c.name, *c.synonyms)]
    config = system.segmentation.config
    vectors = prompt_vectors(system, [w for _, w in taught] + names, config)  # cached per folder
    unit = F.normalize(vectors.float(), dim=-1)  # (W + N, hidden); float: bf16 models compare the same way
    per_word = unit[len(taught) :] @ unit[: len(taught)].T  # (N, W): each name against every taught name
    owner = torch.tensor([k for k, _ in taught])
    similarity = torch.full((len(names), len(trained)), -1.0)
    for k in range(len(trained)):  # a class is as close as its nearest taught name
        similarity[:, k] = per_word[:, owner == k].max(dim=1).values
    # a cosine decides among the classes the text side was taught; by-name-only classes match by name alone
    by_text = torch.tensor([not c.by_name_only for c in vocabulary.classes])
    best, index = similarity.where(by_text, -2.0).max(dim=1)
    close = best >= vocabulary.match_threshold
    nearest_any = similarity.max(dim=1)  # what messages name when no text-taught class is near
    best, index = torch.where(close, best, nearest_any.values), torch.where(close, index, nearest_any.indices)
    for i, name in enumerate(names):  # the same name up to case and spacing is that class, whatever the
        key = name_key(name)  # cosines say (rsneo learn's learnt classes are looked up that way too)
        same = [k for k, w in taught if name_key(w) == key]
        if same:  # a class's own name before another class's other name
            own = [k for k in same if name_key(vocabulary.classes[k].name) == key]
            best[i], index[i], close[i] = 1.0, (own or same)[0], True
    unseen = untaught_pieces(system, [w for _, w in taught], names) if vocabulary.taught_pieces_only else None
    out = []
    for i, (name, s, k, near) in enumerate(zip(names, best, index, close, strict=True)):
        nearest, new = vocabulary.classes[int(k)], unseen[i] if unseen else ()
        near = bool(near) and not new
        # read as a class that lists it as narrower: its map is that whole broader class
        broader = near and name_key(name) in {name_key(w) for w in nearest.narrower}
        out.append(ClassMatch(name, nearest.name, float(s), near and not broader, broader, new))
    return out


def untaught_pieces(system, taught: list[str], names: list[str]) -> list[tuple[str, ...]]:
    """For each name, the word pieces of its prompt that no taught name's prompt contains (empty for a name
    that is a taught name up to case and spacing)."""
    template = system.segmentation.config.prompt_template

    def pieces(word: str) -> list[int]:
        return system.tokenizer(template.format(word), add_special_tokens=False)["input_ids"]

    known = {i for word in taught for i in pieces(word)}
    own = {name_key(w) for w in taught}
    return [
        () if name_key(n) in own else tuple(system.tokenizer.decode([i]) for i in pieces(n) if i not in known)
        for n in names
    ]


def classes_read(system, names: list[str]) -> list[str | None]:
    """The trained class each name is read as (itself, a class it is another name of, or the broader class
    it is narrower than); None for a name read as no trained class, or when the folder has no vocabulary."""
    matches = match_classes(system, names)
    if matches is None:
        return [None] * len(names)
    return [m.nearest if m.trained or m.broader else None for m in matches]


def read_classes(system, names: list[str], *, strict: bool = False, what: str = "--classes") -> ClassReadings:
    """How the model reads each typed name. Untrained names (never taught, or narrower than the class they
    read as) get one warning naming them; `strict` refuses them (InputError)."""
    matches = match_classes(system, names)
    if matches is None:
        return ClassReadings()
    read_as = {m.name: m.reading for m in matches if m.reading is not None}
    unknown = [m for m in matches if not m.trained]
    if not unknown:
        return ClassReadings((), read_as)
    trained = ", ".join(system.vocabulary.names)
    broad = [m for m in unknown if m.broader]
    never = [m for m in unknown if not m.broader]
    parts = []
    if never:
        detail = "; ".join(
            f'"{m.name}" (word pieces never taught: {", ".join(repr(p.strip()) for p in m.unseen)})'
            if m.unseen
            else f'"{m.name}" (nearest: "{m.nearest}", similarity {m.similarity:.2f})'
            for m in never
        )
        parts.append(f"the model in {system.folder} was trained on {trained} only; not on {detail}")
    if broad:
        detail = "; ".join(f'"{m.name}" -> read as "{m.nearest}" (broader)' for m in broad)
        parts.append(
            f"{detail}: {'its' if len(broad) == 1 else 'each'} map is every pixel of the broader class, "
            "not the narrower class typed"
        )
    message = f"{what}: {'; '.join(parts)}. Their maps are not what was typed"
    if strict:
        raise InputError(f"{message}; --strict refuses them (use trained class names, or teach the model)")
    warnings.warn(f"{message} and are marked (untrained).", UntrainedClassWarning, stacklevel=2)
    return ClassReadings(tuple(m.name for m in unknown), read_as)


def untrained_classes(
    system, names: list[str], *, strict: bool = False, what: str = "--classes"
) -> tuple[str, ...]:
    """The names the model was not trained on (`read_classes`, its warning and `strict` included)."""
    return read_classes(system, names, strict=strict, what=what).untrained
