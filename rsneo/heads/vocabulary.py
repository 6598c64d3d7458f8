"""What a model folder was trained to recognise, and how close a typed class name is to it.

`vocabulary.json` in a model folder records the classes and prompts the segmentation head was trained on, the
other names each class was taught under (`synonyms`, see `rsneo.heads.class_words`) and the held-out score of
each (where it was measured). A typed class name is compared with every trained class in the model's own text
space: the backbone's last-token state of the class prompt, the very vector the segmentation head reads
(cosine similarity; a class is as close as its nearest taught name). A name whose nearest trained class is
less similar than the folder's `match_threshold` is "untrained": the model was never taught it, so its map is
arbitrary. Commands say so (a warning, "(untrained)" in legends, a report note) and `strict` refuses such
names.
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
from rsneo.heads.class_words import CLASS_WORDS
from rsneo.heads.features import encode_class_prompts

VOCABULARY_JSON = "vocabulary.json"
# On the bundled model, taught names and names ending in a taught word ("open water", "river and lakes",
# "dry land") sit at cosine >= 0.98 from their class; every untaught name tried ("streams and ponds",
# "forest", "urban area", "banana") at <= 0.91 (benchmarks/vocabulary.py prints them). 0.95 sits in that gap.
DEFAULT_MATCH_THRESHOLD = 0.95


class UntrainedClassWarning(RSNeoWarning):
    """A class name the model was never trained on: its map is not to be trusted."""


@dataclass(frozen=True)
class TrainedClass:
    name: str
    prompts: tuple[str, ...]
    held_out: dict = field(default_factory=dict)  # {"iou": float, "data": "what it was measured on"}
    synonyms: tuple[str, ...] = ()  # other names taught as this class ("lake", "reservoir", ...)


@dataclass(frozen=True)
class Vocabulary:
    classes: tuple[TrainedClass, ...]
    match_threshold: float = DEFAULT_MATCH_THRESHOLD
    note: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)


@dataclass(frozen=True)
class ClassMatch:
    """A typed name, its nearest trained class and their cosine similarity in the model's text space."""

    name: str
    nearest: str
    similarity: float
    trained: bool


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
            )
            for c in data["classes"]
        )
        threshold = float(data.get("match_threshold", DEFAULT_MATCH_THRESHOLD))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"{path}: expected a vocabulary with a list of classes, could not read it ({exc})"
        ) from None
    if not classes:
        raise InputError(f"{path}: expected at least one trained class, found none")
    return Vocabulary(classes, threshold, str(data.get("note", "")))


def save_vocabulary(folder: Path, vocabulary: Vocabulary) -> Path:
    """Write `vocabulary.json` into `folder` (hidden name, then rename)."""
    path = Path(folder) / VOCABULARY_JSON
    data = {
        "classes": [
            asdict(c) | {"prompts": list(c.prompts), "synonyms": list(c.synonyms)} for c in vocabulary.classes
        ],
        "match_threshold": vocabulary.match_threshold,
        "note": vocabulary.note,
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
        out.append(TrainedClass(name, prompts, {}, taught))
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
    vectors = encode_class_prompts(system.model, system.tokenizer, [w for _, w in taught] + names, config)
    unit = F.normalize(vectors.float(), dim=-1)  # (W + N, hidden); float: bf16 models compare the same way
    per_word = unit[len(taught) :] @ unit[: len(taught)].T  # (N, W): each name against every taught name
    owner = torch.tensor([k for k, _ in taught])
    similarity = torch.full((len(names), len(trained)), -1.0)
    for k in range(len(trained)):  # a class is as close as its nearest taught name
        similarity[:, k] = per_word[:, owner == k].max(dim=1).values
    for i, name in enumerate(names):  # the same name up to case and spacing is that class (rsneo learn's
        key = " ".join(name.split()).lower()  # learnt classes are looked up that way too)
        same = [k for k, w in taught if " ".join(w.split()).lower() == key]
        if same:
            similarity[i, same[0]] = 1.0
    best, index = similarity.max(dim=1)
    return [
        ClassMatch(name, trained[int(i)], float(s), float(s) >= vocabulary.match_threshold)
        for name, s, i in zip(names, best, index, strict=True)
    ]


def untrained_classes(
    system, names: list[str], *, strict: bool = False, what: str = "--classes"
) -> tuple[str, ...]:
    """The names the model was not trained on; a warning names them, `strict` refuses them (InputError)."""
    matches = match_classes(system, names)
    if matches is None:
        return ()
    unknown = [m for m in matches if not m.trained]
    if not unknown:
        return ()
    trained = ", ".join(system.vocabulary.names)
    detail = "; ".join(f'"{m.name}" (nearest: "{m.nearest}", similarity {m.similarity:.2f})' for m in unknown)
    message = (
        f"{what}: the model in {system.folder} was trained on {trained} only; not on {detail}. "
        "Their maps are arbitrary"
    )
    if strict:
        raise InputError(f"{message}; --strict refuses them (use trained class names, or teach the model)")
    warnings.warn(f"{message} and are marked (untrained).", UntrainedClassWarning, stacklevel=2)
    return tuple(m.name for m in unknown)
