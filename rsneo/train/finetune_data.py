"""Labelled samples -> normalised chips for `rsneo finetune`: the validation split, augmentation, batches.

Every date is standardised with its raster's `BandLayout` (`rsneo.data.frames.band_layout`: the statistics,
band groups and date `rsneo segment` and `rsneo change` use on that file), invalid pixels set to 0 as
`BandLayout.images` does, and turned into band groups with `image_groups` after augmentation: a chip reaches
the model as a window of the same raster reaches it in prediction.

Validation: pairs listed in `list/val.txt`; whole samples held out (`samples`, what `auto` does from five
samples on); or spatial blocks: square blocks of every sample are held out (their labels scored, never trained
on), and a margin around them is not trained on either, so a training label never touches a scored pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from rsneo.data.documents import image_documents
from rsneo.data.frames import BandLayout, band_layout, days, image_groups, pad_to_tokens, standardise
from rsneo.data.labelled import IGNORE, Sample
from rsneo.errors import InputError

# `finetune.val=auto` holds whole samples out from this many on: blocks of LEVIR-CD's six training crops of a
# fold scored validation F1 0.89-0.92 while new crops scored 0.22-0.85, so blocks of the scenes a model trains
# on do not tell how it does on new scenes (docs/training.md).
SAMPLES_TO_HOLD_OUT = 5


@dataclass
class Prepared:
    """One sample, normalised and split: what the training and validation sets cut chips from."""

    name: str
    pixels: np.ndarray  # (frames, bands, H, W) float32 standardised, invalid 0, padded to whole tokens
    train: np.ndarray  # (H, W) int64 labels to train on, -1 elsewhere
    val: np.ndarray  # (H, W) int64 labels to score, -1 elsewhere
    classes: tuple[str, ...]
    layout: BandLayout  # of the first date (every date holds the same bands)
    times: tuple[float | None, ...]

    @property
    def key(self) -> tuple:
        """Samples of one key can share a batch: the same classes, bands and number of dates."""
        return self.classes, self.layout.band_names, self.pixels.shape[0]


def prepare(sample: Sample, band_groups: str, token_size: int, sensor: str | None = None) -> Prepared:
    """Standardise every date of `sample` as prediction would (`band_layout` of its file), pad to tokens."""
    scene = sample.scene
    sources = list(scene.attrs.get("sources") or ())
    if len(sources) != scene.sizes["time"]:
        raise InputError(f"{sample.name}: expected one source file per date, found {sources}")
    names = [str(b) for b in scene["band"].values]
    layouts = [band_layout(path, sensor or scene.attrs["sensor"], names, band_groups) for path in sources]
    values = scene.values  # (time, band, y, x), NaN = nodata
    valid = ~np.isnan(values).any(axis=(0, 1))  # (y, x) valid on every date
    pixels = np.stack(
        [standardise(np.where(valid, values[t], np.nan), lay.mean, lay.std) for t, lay in enumerate(layouts)]
    )
    labels = np.where(valid, sample.mask, IGNORE)
    pixels = pad_to_tokens(pixels, token_size)
    pad = [(0, pixels.shape[-2] - labels.shape[0]), (0, pixels.shape[-1] - labels.shape[1])]
    labels = np.pad(labels, pad, constant_values=IGNORE)
    times = tuple(days(lay.date) for lay in layouts)
    return Prepared(
        sample.name, pixels, labels, np.full_like(labels, IGNORE), sample.classes, layouts[0], times
    )


def hold_out_blocks(
    item: Prepared, share: float, block: int, margin: int, rng: np.random.Generator
) -> Prepared:
    """`item` with about `share` of its labelled blocks (`block` pixels a side) moved to validation, and a
    `margin` around them taken out of training."""
    labels = item.train
    rows, cols = -(-labels.shape[0] // block), -(-labels.shape[1] // block)
    labelled = [(r, c) for r in range(rows) for c in range(cols)
                if (labels[r * block : (r + 1) * block, c * block : (c + 1) * block] >= 0).any()]  # fmt: skip
    if not labelled:
        return item
    count = max(1, round(share * len(labelled)))
    chosen = [labelled[i] for i in rng.choice(len(labelled), count, replace=False)]
    chosen = cover_classes(labels, labelled, chosen, block, rng)
    train, val = labels.copy(), np.full_like(labels, IGNORE)
    for r, c in chosen:
        inner = slice(r * block, (r + 1) * block), slice(c * block, (c + 1) * block)
        val[inner] = labels[inner]
        train[max(0, r * block - margin) : (r + 1) * block + margin,
              max(0, c * block - margin) : (c + 1) * block + margin] = IGNORE  # fmt: skip
    return Prepared(item.name, item.pixels, train, val, item.classes, item.layout, item.times)


def cover_classes(
    labels: np.ndarray,
    labelled: list[tuple[int, int]],
    chosen: list[tuple[int, int]],
    block: int,
    rng: np.random.Generator,
) -> list[tuple[int, int]]:
    """`chosen`, plus one more block (drawn from those holding it) for every class of `labels` that no chosen
    block holds.

    Why: a class missing from validation scores 0 at every epoch, so early stopping and the kept checkpoint
    would follow the other classes alone; a rare class (a few ponds in one scene) is the one a random 20 % of
    blocks misses. Draws that hold every class stay as they were."""

    def classes(r: int, c: int) -> set[int]:
        window = labels[r * block : (r + 1) * block, c * block : (c + 1) * block]
        return set(np.unique(window[window >= 0]).tolist())

    seen = set().union(*(classes(*b) for b in chosen))
    missing = set(np.unique(labels[labels >= 0]).tolist()) - seen
    if not missing:  # the usual case: no other block is read
        return chosen
    chosen = list(chosen)
    for k in sorted(missing):
        if k in seen:  # a block added for an earlier class holds this one too
            continue
        spare = [b for b in labelled if b not in chosen and k in classes(*b)]
        if spare:
            chosen.append(spare[int(rng.integers(len(spare)))])
            seen |= classes(*chosen[-1])
    return chosen


def split_samples(
    items: Sequence[Prepared],
    splits: Sequence[str | None],
    mode: str,
    share: float,
    block: int,
    margin: int,
    seed: int,
) -> tuple[list[Prepared], str]:
    """Training and validation labels of every item, and a sentence saying how validation was chosen.

    `mode`: "list" (items whose split is "val" are validation, "test" ones are left out), "blocks",
    "samples" (about `share` of the items, whole, chosen by `seed`: validation on scenes training never saw,
    which blocks of the training scenes are not), or "auto": list when any item is listed for validation,
    else samples from `SAMPLES_TO_HOLD_OUT` items on (fewer would give up too much of the training data),
    else blocks."""
    if mode not in ("auto", "list", "blocks", "samples"):
        raise InputError(f"finetune.val: expected auto, list, blocks or samples, got {mode!r}")
    listed = any(s is not None for s in splits)
    if mode == "list" and not any(s == "val" for s in splits):
        raise InputError("finetune.val=list: no pair is listed in list/val.txt")
    if mode == "list" or (mode == "auto" and any(s == "val" for s in splits)):
        out = []
        for item, split in zip(items, splits, strict=True):
            if split == "val":
                out.append(whole_validation(item))
            elif split != "test":
                out.append(item)
        count = sum(s == "val" for s in splits)
        return out, f"{count} pair(s) of list/val.txt"
    rng = np.random.default_rng(seed)
    kept = [i for i, s in zip(items, splits, strict=True) if not (listed and s == "test")]
    blocks = f"spatial blocks of {block} px ({share:.0%} of each sample, {margin} px margin untrained)"
    if mode in ("samples", "auto"):
        whole = hold_out_whole(kept, 2 if mode == "samples" else SAMPLES_TO_HOLD_OUT, share, rng)
        if whole is not None:
            out, note, small = whole
            for i in small:  # class lists with too few samples to give one up whole
                out[i] = hold_out_blocks(kept[i], share, block, margin, rng)
            return out, note + (f"; {blocks} of the class lists with fewer samples" if small else "")
    return [hold_out_blocks(item, share, block, margin, rng) for item in kept], blocks


def hold_out_whole(
    items: Sequence[Prepared], least: int, share: float, rng: np.random.Generator
) -> tuple[list[Prepared], str, list[int]] | None:
    """About `share` of the samples of every class list holding at least `least` of them (at least one, never
    all: no dataset's class names lose all their training samples) moved whole to validation; the note; the
    indexes of the samples of smaller class lists, left as they were. None when no class list is large enough
    (`least` 2: that is refused)."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(item.classes, []).append(i)
    small = [names for names, members in groups.items() if len(members) < least]
    if least == 2 and small:
        raise InputError(
            f"finetune.val=samples: expected at least 2 labelled samples of each class list to hold "
            f"whole ones out, {', '.join(map(str, small))} has fewer (use finetune.val=blocks)"
        )
    if len(small) == len(groups):
        return None
    out, held, alone = list(items), [], []
    for names, members in groups.items():
        if names not in small:
            count = min(len(members) - 1, max(1, round(share * len(members))))
            picked = sorted(rng.choice(members, count, replace=False).tolist())
            chosen, lone = swap_single_class(items, members, picked, rng)
            for i in chosen:
                out[i] = whole_validation(items[i])
                held.append(items[i].name)
            alone += [items[i].name for i in lone]
    note = f"{len(held)} whole sample{'s' if len(held) > 1 else ''} held out: {', '.join(held)}"
    if alone:
        note += f" ({', '.join(alone)}: one class only, no other sample had more)"
    return out, note, [i for names in small for i in groups[names]]


def several_classes(item: Prepared) -> bool:
    """Whether the sample's labels hold more than one class."""
    labels = item.train[item.train != IGNORE]
    return labels.size > 0 and bool((labels != labels.flat[0]).any())


def swap_single_class(
    items: Sequence[Prepared], members: list[int], picked: list[int], rng: np.random.Generator
) -> tuple[list[int], list[int]]:
    """`picked`, each sample of one class alone swapped for a sample of several not picked, while any is left;
    and the samples of one class alone that stayed (none had more to take their place).

    Why: a LEVIR-CD pair without change held out alone scores F1 0 at every epoch, so it would choose the
    first checkpoint, stop the run and set the change cut on nothing. The draws of samples that hold
    several classes stay as they were."""
    lone = [i for i in picked if not several_classes(items[i])]
    if not lone:  # the usual case: no other sample's labels need reading
        return picked, []
    spare = [i for i in members if i not in picked and several_classes(items[i])]
    swapped = {i: spare.pop(int(rng.integers(len(spare)))) for i in lone if spare}
    return sorted(swapped.get(i, i) for i in picked), [i for i in lone if i not in swapped]


def whole_validation(item: Prepared) -> Prepared:
    """`item` with every label moved to validation."""
    return Prepared(item.name, item.pixels, np.full_like(item.train, IGNORE), item.train, item.classes,
                    item.layout, item.times)  # fmt: skip


def dihedral(arrays: Sequence[np.ndarray], k: int, flip: bool) -> list[np.ndarray]:
    """The same rotation by k x 90 degrees (and left-right flip) of every array's last two axes."""
    out = [np.rot90(a, k, axes=(-2, -1)) for a in arrays]
    return [np.ascontiguousarray(a[..., ::-1] if flip else a) for a in out]


def chip_batch(items: Sequence[Prepared], chips: Sequence[tuple[np.ndarray, np.ndarray]], config) -> dict:
    """Chips (pixels (frames, bands, S, S), labels (S, S)) of items sharing a key -> a batch: the model's
    `inputs` (one scene document per chip, dates seeing each other), `labels` (B, S, S), `classes`."""
    first = items[0]
    lay, token = first.layout, config.token_size
    frames = [
        [image_groups(pixels[t], lay.wavelengths, lay.keys, lay.groups, item.times[t], token)
         for t in range(pixels.shape[0])]
        for item, (pixels, _) in zip(items, chips, strict=True)
    ]  # fmt: skip
    policy = "scene" if first.pixels.shape[0] > 1 else "frame"
    return {
        "inputs": image_documents(frames, config, policy=policy),
        "labels": torch.from_numpy(np.stack([labels for _, labels in chips])),
        "classes": first.classes,
        "frames": first.pixels.shape[0],
    }


class TrainingChips(Dataset):
    """`steps` batches per epoch of `batch_size` random chips (dihedral augmentation), each batch from one
    key (`Prepared.key`, taken in turn); every draw is seeded by (seed, epoch, index), so a resumed run
    draws what an uninterrupted one would."""

    def __init__(self, items: Sequence[Prepared], config, chip: int, batch_size: int, steps: int, seed: int):
        groups: dict[tuple, list[Prepared]] = {}
        for item in items:
            if (item.train >= 0).any():
                groups.setdefault(item.key, []).append(item)
        if not groups:
            raise InputError("finetune: no labelled pixels left to train on after the validation split")
        if chip % config.token_size:
            raise InputError(f"data.tile: expected a multiple of {config.token_size} pixels, got {chip}")
        self.groups, self.config = list(groups.values()), config
        token = config.token_size  # a group's chips fit its smallest sample, in whole tokens
        self.sizes = [min(chip, *(min(i.train.shape) // token * token for i in g)) for g in self.groups]
        self.batch_size, self.steps, self.seed, self.epoch = batch_size, steps, seed, 0

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        group, size = self.groups[index % len(self.groups)], self.sizes[index % len(self.groups)]
        items = [group[i] for i in rng.integers(len(group), size=self.batch_size)]
        return chip_batch(items, [self.crop(item, size, rng) for item in items], self.config)

    @staticmethod
    def crop(item: Prepared, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        h, w = item.train.shape
        row, col = rng.integers(h - size + 1), rng.integers(w - size + 1)
        window = slice(row, row + size), slice(col, col + size)
        pixels, labels = item.pixels[(..., *window)], item.train[window]
        return tuple(dihedral([pixels, labels], int(rng.integers(4)), bool(rng.integers(2))))


class ValidationSamples(Dataset):
    """Every item with labels to score, whole, one per batch (sizes may differ)."""

    def __init__(self, items: Sequence[Prepared], config) -> None:
        self.items = [item for item in items if (item.val >= 0).any()]
        if not self.items:
            raise InputError("finetune: the validation split holds no labelled pixels")
        self.config = config

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        return chip_batch([item], [(item.pixels, item.val)], self.config)
