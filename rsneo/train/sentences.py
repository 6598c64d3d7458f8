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
