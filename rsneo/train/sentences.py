"""Sentences made from labels, so that labelled archives also teach the language side.

Class shares from a mask ("water covers 23% of the image."), multi-label scene classes, and change
statistics. Numbers are rounded to whole percent so that the text is short and the same mask always
gives the same words.
"""

from __future__ import annotations

import numpy as np


def class_share_sentence(mask: np.ndarray, names: dict[int, str], nodata: int | None = -1) -> str:
    """Shares of the classes in `mask` over its valid pixels, largest first.

    `names` maps class values to words, e.g. {0: "land", 1: "water"}; pixels equal to `nodata` are left
    out.
    """
    valid = mask != nodata if nodata is not None else np.ones(mask.shape, dtype=bool)
    total = int(valid.sum())
    if total == 0:
        return "No pixel of the image is labelled."
    shares = [(value, int(np.round(100 * (mask[valid] == value).sum() / total))) for value in names]
    shares.sort(key=lambda item: -item[1])
    parts = [f"{names[value]} covers {share}%" for value, share in shares]
    return f"{parts[0].capitalize()} of the image" + "".join(f", {p}" for p in parts[1:]) + "."


def scene_labels_sentence(labels: list[str]) -> str:
    """A multi-label scene as a sentence: 'Land cover: pastures, coniferous forest.'"""
    if not labels:
        return "Land cover: none labelled."
    return "Land cover: " + ", ".join(label.strip().lower() for label in labels) + "."


def change_sentence(changed: int, unchanged: int, first: str, second: str) -> str:
    """Change statistics between two dates from counts of changed and unchanged reference pixels."""
    total = changed + unchanged
    share = 0 if total == 0 else int(np.round(100 * changed / total))
    return f"Between {first} and {second}, {share}% of the checked pixels changed."


# ---- question/answer pairs in `rsneo ask`'s chat layout (a fixed, small set of phrasings) ---------------

WATER_QUESTIONS = (
    "How much of the image is water?",  # rsneo.demo.DEMO_QUESTION
    "How much of this image is water?",
    "What share of this image is water?",
    "Is there water in this image?",
)
LAND_COVER_QUESTIONS = (
    "What land cover does this image show?",
    "Describe this image.",  # rsneo.heads.generation.CAPTION_QUESTION
    "What is in this image?",
)
CHANGE_QUESTIONS = (
    "Describe the changes between these images.",  # rsneo.heads.generation.CHANGE_QUESTION
    "What changed between these dates?",
    "How much of this area changed?",
)


def _share(part: float, total: float) -> int:
    return 0 if total == 0 else int(np.round(100 * part / total))


def water_answer(mask: np.ndarray, water: int = 1, nodata: int | None = -1) -> str:
    """'About 23% of this image is water.' from a label mask (nodata pixels left out)."""
    valid = mask != nodata if nodata is not None else np.ones(mask.shape, dtype=bool)
    wet = int((mask[valid] == water).sum())
    if wet == 0:
        return "There is no water in this image."
    share = _share(wet, int(valid.sum()))
    return "Less than 1% of this image is water." if share == 0 else f"About {share}% of this image is water."


def flood_description(mask: np.ndarray, water: int = 1, nodata: int | None = -1) -> str:
    """A land/water tile described: 'The scene shows land and water. About 23% of this image is water.'"""
    answer = water_answer(mask, water, nodata)
    if answer.startswith("There is no"):
        return "The scene shows land, with no water."
    return f"The scene shows land and water. {answer}"


def land_cover_answer(labels: list[str]) -> str:
    """'The scene shows pastures, coniferous forest and water bodies.' from multi-label scene classes."""
    names = [label.strip().lower() for label in labels]
    if not names:
        return "The scene shows no labelled land cover."
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"The scene shows {listed}."


def change_answer(percent: float) -> str:
    """The changed share of a pair (percent of its pixels) as an answer, in whole percent."""
    if percent <= 0:
        return "No change is visible between these images."
    if percent < 0.5:
        return "Less than 1% of the area changed between these images."
    return f"About {int(np.round(percent))}% of the area changed between these images."
