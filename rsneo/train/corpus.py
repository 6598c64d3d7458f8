"""Training documents composed from the archives' samples: image frames, label sentences, captions,
labelled chips, change sources and question/answer documents.

Archives are read by their one reader in `rsneo.data.recipes` (in memory here, or streamed from shards by
`rsneo.train.datamodule`); `compose` turns any `rsneo.data.sample.Sample` into a `TrainingSample` the same
way on both routes: one frame per date (a partner such as Sentinel-1 in the same frame), the year before each
frame of a series, then a sentence from what the sample knows (change statistics of a labelled pair, class
shares of a mask, scene labels, or its caption), the mask as a labelled chip for the segmentation objective,
and optionally the tile's dates as a change source for the simulated-change objective.

Sources (the names of `data.sources`): `sen1floods11`, `bigearthnet`, `timeseries` (the Pucallpa Landsat
composites), `taizhou` (held out from the change head: no change source), `captions` (RSICD scenes),
`torchgeo_raster` (a user's folder of GeoTIFFs of one sensor, windows drawn by TorchGeo's
`RandomGeoSampler`) and `shards` (a prepared archive read into memory). With `qa=True` the first three add
question/answer documents in `rsneo ask`'s chat layout (`chat_document`), the LM loss on the answer only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from rsneo.data.archives import bigearthnet_patches, date_rasters, sen1floods11_chips
from rsneo.data.datasets import random_raster_samples, sample_scene
from rsneo.data.documents import Document, DocumentBuilder
from rsneo.data.frames import frame_groups, standardise
from rsneo.data.recipes import CHANGE, RECIPES, WATER
from rsneo.data.sample import SCENE, Sample
from rsneo.data.shards import ShardDataset
from rsneo.errors import InputError
from rsneo.heads.generation import chat_prompt
from rsneo.model.inputs import DEFAULT_TOKEN_SIZE, ImageInput
from rsneo.model.tokenizer import IM_END
from rsneo.train.batch import ChangeSource
from rsneo.train.pairs import LANDSAT_LIKE_GROUPS, changed_percent, simulate_pair
from rsneo.train.sentences import (
    CHANGE_QUESTIONS,
    LAND_COVER_QUESTIONS,
    WATER_QUESTIONS,
    change_answer,
    change_sentence,
    class_share_sentence,
    flood_description,
    land_cover_answer,
    scene_labels_sentence,
    water_answer,
)

WATER_CLASSES = WATER.classes  # ("land", "water"): Sen1Floods11's table in rsneo.data.recipes


@dataclass
class LabelledChip:
    """One frame's band groups with a per-pixel class map for label-as-text segmentation."""

    groups: list[ImageInput]
    labels: torch.Tensor  # (height, width) long, -1 = unlabelled
    class_names: tuple[str, ...]
    origin: tuple[int, int] = (0, 0)  # (row, col) of the chip's top-left pixel in its source raster


@dataclass
class TrainingSample:
    """What a training step takes from one sample: its document, a labelled chip, a change source."""

    document: Document
    chip: LabelledChip | None = None
    change: ChangeSource | None = None  # dates of the tile for the simulated-change objective


QA_SOURCES = ("sen1floods11", "bigearthnet", "timeseries")  # sources that can add question/answer documents


def chat_document(
    builder: DocumentBuilder,
    frames: list[list[ImageInput]],
    question: str,
    answer: str,
    dates: list[str | None] | None = None,
) -> Document:
    """A question about `frames` and its answer in the prompt layout of `rsneo ask` (`chat_prompt`): only the
    answer and its `<|im_end|>` are learned: the model learns to answer and to stop, not to ask."""
    return chat_prompt(builder, frames, question, dates).text(f"{answer}{IM_END}", learn=True).end(eos=False)


def _date(scene: xr.DataArray, t: int) -> str | None:
    value = scene["time"].values[t]
    return None if np.isnat(value) else str(np.datetime_as_string(value, unit="D"))


def change_source(
    scene: xr.DataArray,
    values: np.ndarray,
    window: tuple[slice, slice] | None = None,
    token_size: int = DEFAULT_TOKEN_SIZE,
) -> ChangeSource:
    """Every date of a tile in Landsat-like band groups (`rsneo.train.pairs.LANDSAT_LIKE_GROUPS`)."""
    family = next((k for k in LANDSAT_LIKE_GROUPS if str(scene.attrs["sensor"]).startswith(k)), None)
    groups = LANDSAT_LIKE_GROUPS[family] if family else None
    frames = [
        frame_groups(scene, values, t, window, groups, token_size=token_size)
        for t in range(scene.sizes["time"])
    ]
    return ChangeSource(frames, [_date(scene, t) for t in range(scene.sizes["time"])])


def change_qa_samples(
    sources: list[ChangeSource], builder: Callable[[], DocumentBuilder], seed: int
) -> list[TrainingSample]:
    """One chat document per source: a simulated change pair (fixed by `seed` and the source's index), a
    change question and the pair's changed share as the answer.

    The pair is simulated from one date only: a real later date may hold real, unlabelled change, which
    would make the stated share wrong."""
    samples = []
    for i, source in enumerate(sources):
        generator = torch.Generator().manual_seed(seed * 7919 + i)
        donors = [torch.cat([g.pixels for g in s.frames[0]]) for s in sources
                  if s is not source and s.signature == source.signature][:4]  # fmt: skip
        t = i % len(source.frames)
        one_date = ChangeSource([source.frames[t]], [source.dates[t]])
        before, after, labels, dates = simulate_pair(one_date, generator, donors)
        question = CHANGE_QUESTIONS[i % len(CHANGE_QUESTIONS)]
        answer = change_answer(changed_percent(labels))
        samples.append(TrainingSample(chat_document(builder(), [before, after], question, answer, dates)))
    return samples


def _require(path: Path) -> Path:
    if not path.exists():
        raise InputError(f"{path}: expected this sample file or folder under data_root, found none")
    return path


# ---- one sample, one training sample: the same on both routes ---------------------------------------------


def year(scene: xr.DataArray, t: int) -> str:
    """The label put before date `t`'s frame: its year (composites and pairs are dated by year)."""
    value = scene["time"].values[t]
    return "unknown date" if np.isnat(value) else str(np.datetime_as_string(value, unit="Y"))


def normalised(sample: Sample) -> dict[str, np.ndarray]:
    """Each scene's values standardised with the statistics the sample carries (its source's)."""
    return {key: standardise(scene.values, *sample.stats(key)) for key, scene in sample.scenes()}


def sample_frames(
    sample: Sample, values: dict[str, np.ndarray], token_size: int = DEFAULT_TOKEN_SIZE
) -> list[list[ImageInput]]:
    """The band groups of each date: the main scene's, then each partner's that has the date."""
    return [
        [g for key, scene in sample.scenes() if t < scene.sizes["time"]
         for g in frame_groups(scene, values[key], t, token_size=token_size)]
        for t in range(sample.scene.sizes["time"])
    ]  # fmt: skip


def sentence(sample: Sample) -> str | None:
    """What the sample says in words: a labelled pair's changed share, a mask's class shares, its scene
    labels or its caption; None when it knows nothing."""
    scene = sample.scene
    if sample.mask is not None and scene.sizes["time"] > 1 and sample.classes == CHANGE.classes:
        changed, checked = int((sample.mask == 1).sum()), int((sample.mask >= 0).sum())
        last = scene.sizes["time"] - 1
        return change_sentence(changed, checked - changed, year(scene, 0), year(scene, last))
    if sample.mask is not None:
        return class_share_sentence(sample.mask, dict(enumerate(sample.classes)), nodata=-1)
    if sample.labels:
        return scene_labels_sentence(list(sample.labels))
    return sample.captions[0] if sample.captions else None


def compose(
    sample: Sample, builder: DocumentBuilder, token_size: int = DEFAULT_TOKEN_SIZE, change: bool = False
) -> TrainingSample:
    """A sample as a training document (see the module docstring); a single-date mask on whole tokens is
    also a labelled chip, and `change` makes the sample's dates a change source."""
    values = normalised(sample)
    frames = sample_frames(sample, values, token_size)
    dated = len(frames) > 1
    for t, groups in enumerate(frames):
        if dated:
            builder.text(f"{year(sample.scene, t)}:", learn=False)
        builder.frame(groups)
    text = sentence(sample)
    if text is not None:
        builder.text(text, learn=True)
    chip = None
    if sample.mask is not None and not dated and not any(n % token_size for n in sample.mask.shape):
        own = frame_groups(sample.scene, values[SCENE], 0, token_size=token_size)
        chip = LabelledChip(own, torch.from_numpy(sample.mask.copy()), sample.classes, sample.origin)
    source = change_source(sample.scene, values[SCENE], None, token_size) if change else None
    return TrainingSample(builder.end(), chip, source)


def _read(recipe: str, folder: Path, tile: int, **options) -> list[Sample]:
    chosen = RECIPES[recipe]
    return [part for item in chosen.items(_require(folder), **options)
            for whole in chosen.read(item) for part in chosen.cut(whole, tile)]  # fmt: skip


# ---- sources -----------------------------------------------------------------------------------------------


def sen1floods11(
    root: Path,
    builder: Callable[[], DocumentBuilder],
    tile: int,
    split: str = "all",
    qa: bool = False,
    token_size: int = DEFAULT_TOKEN_SIZE,
) -> list[TrainingSample]:
    """Sen1Floods11 tiles. `split`: `train` = left half of each chip, `val` = right half, `all` = both.

    `qa`: also a water-share question and a description request per tile, and a simulated change pair's
    question, in the chat layout (the tile's chip and change source ride along)."""
    recipe = RECIPES["sen1floods11"]
    samples: list[TrainingSample] = []
    sources: list[ChangeSource] = []
    for chip in recipe.items(_require(root / "sen1floods11")):
        for whole in recipe.read(chip):
            for part in recipe.cut(whole, tile):
                if split != "all" and part.split != split:
                    continue
                item = compose(part, builder(), token_size, change=True)
                samples.append(item)
                if qa and item.chip is not None:
                    frame = [item.chip.groups]  # as `rsneo ask` reads a Sentinel-2 file
                    question = WATER_QUESTIONS[len(sources) % len(WATER_QUESTIONS)]
                    asked = chat_document(builder(), frame, question, water_answer(part.mask))
                    samples.append(TrainingSample(asked, item.chip, item.change))
                    answer = flood_description(part.mask)
                    describe = chat_document(builder(), frame, LAND_COVER_QUESTIONS[1], answer)
                    samples.append(TrainingSample(describe, item.chip, item.change))
                sources.append(item.change)
            if qa and whole.mask is not None:
                samples += water_overview_samples(whole, split, builder, token_size)
    if qa:
        samples += change_qa_samples(sources, builder, seed=1)
    return samples


def water_overview_samples(
    whole: Sample,
    split: str,
    builder: Callable[[], DocumentBuilder],
    token_size: int = DEFAULT_TOKEN_SIZE,
) -> list[TrainingSample]:
    """Water questions about larger views of the split's half of a chip (128 px tiles, 256 px tiles and the
    whole half, these two averaged down 2x, as `rsneo ask` reads a whole raster at a reduced size); the
    answer is the share of the full-resolution labels."""
    import torch.nn.functional as F

    scene, labels = whole.scene, whole.mask
    values = standardise(scene.values, *whole.stats())
    half = labels.shape[1] // 2
    cols = {"train": (0, half), "val": (half, labels.shape[1])}.get(split, (0, labels.shape[1]))
    height, width = labels.shape[0], cols[1] - cols[0]
    views = [
        ((r, r + 128), (c, c + 128), 1)
        for r in range(0, height - 127, 128)
        for c in range(0, width - 127, 128)
    ]
    views += [
        ((r, r + 256), (c, c + 256), 2)
        for r in range(0, height - 255, 256)
        for c in range(0, width - 255, 256)
    ]
    views += [((0, height - height % 64), (0, width - width % 64), 2)]
    samples = []
    for i, (rows, (c0, c1), factor) in enumerate(views):
        window = (slice(*rows), slice(cols[0] + c0, cols[0] + c1))
        mask = labels[window]
        if (mask < 0).mean() > 0.5:
            continue
        groups = frame_groups(scene, values, 0, window, token_size=token_size)
        if factor > 1:
            groups = [
                ImageInput(F.avg_pool2d(g.pixels[None], factor)[0], g.wavelengths, g.band_keys, g.time)
                for g in groups
            ]
        question = WATER_QUESTIONS[i % len(WATER_QUESTIONS)]
        samples.append(TrainingSample(chat_document(builder(), [groups], question, water_answer(mask))))
    return samples


def bigearthnet(
    root: Path,
    builder: Callable[[], DocumentBuilder],
    tile: int,
    qa: bool = False,
    token_size: int = DEFAULT_TOKEN_SIZE,
) -> list[TrainingSample]:
    """BigEarthNet patches with labels (120x120 at 10 m): the centre `tile` pixels (at most 96), Sentinel-1
    in the same frame, with the label sentence; `qa`: also each land-cover question (chat layout) and a
    simulated change pair's question."""
    samples: list[TrainingSample] = []
    sources: list[ChangeSource] = []
    for part in _read("bigearthnet", root / "bigearthnet", tile):
        if not part.labels:
            continue
        item = compose(part, builder(), token_size, change=True)
        samples.append(item)
        if qa:
            for question in LAND_COVER_QUESTIONS:
                answer = land_cover_answer(list(part.labels))
                qa_doc = chat_document(builder(), [item.document.groups], question, answer)
                samples.append(TrainingSample(qa_doc, None, item.change))
        sources.append(item.change)
    if qa:
        samples += change_qa_samples(sources, builder, seed=2)
    return samples


PUCALLPA = {"sensor": "landsat5_tm", "bands": ["B5", "B4", "B3", "B2"]}  # the composites carry no band names


def timeseries(
    root: Path,
    builder: Callable[[], DocumentBuilder],
    tile: int,
    qa: bool = False,
    token_size: int = DEFAULT_TOKEN_SIZE,
) -> list[TrainingSample]:
    """Landsat composites over Pucallpa, 1985..2020: one frame per date with its year as text before it.

    Each tile's dates are also a change source (real date pairs, treated with care: see
    `rsneo.train.change`); `qa`: also a simulated change pair's question per tile."""
    folder = root / "timeseries" / "landsat_pucallpa"
    parts = _read("timeseries", folder, tile, **PUCALLPA)
    samples = [compose(part, builder(), token_size, change=True) for part in parts]
    if qa:
        samples += change_qa_samples([s.change for s in samples if s.change is not None], builder, seed=3)
    return samples


def taizhou(
    root: Path, builder: Callable[[], DocumentBuilder], tile: int, token_size: int = DEFAULT_TOKEN_SIZE
) -> list[TrainingSample]:
    """Two Landsat-7 dates over Taizhou with the share of changed reference pixels of each tile as text."""
    parts = _read("taizhou", root / "landsat_change_taizhou", tile)
    return [compose(part, builder(), token_size) for part in parts]


def captions(
    root: Path, builder: Callable[[], DocumentBuilder], tile: int, token_size: int = DEFAULT_TOKEN_SIZE
) -> list[TrainingSample]:
    """RSICD scenes (RGB): the centre crop of `tile` pixels (at least 64) followed by each of its captions."""
    return [compose(p, builder(), token_size) for p in _read("captions", root / "text" / "rsicd_mini", tile)]


def torchgeo_raster(
    root: Path,
    builder: Callable[[], DocumentBuilder],
    tile: int,
    folder: str | None = None,
    sensor: str | None = None,
    file_bands: list[str] | None = None,
    count: int = 64,
    seed: int = 0,
    token_size: int = DEFAULT_TOKEN_SIZE,
) -> list[TrainingSample]:
    """`count` seeded windows of `tile` pixels from a folder of GeoTIFFs of one sensor (`SensorRaster` +
    `RandomGeoSampler`), each one frame with no text: the image objectives learn from a user's own rasters.
    Each window is also a change source. `root` (data_root) is not used: the folder is the user's."""
    if not folder or not sensor:
        raise InputError("data=torchgeo_raster: expected data.root (a folder of GeoTIFFs) and data.sensor")
    windows = random_raster_samples(Path(folder).expanduser(), sensor, tile, count, seed, file_bands)
    return [
        compose(Sample(f"window{i}", sample_scene(item)), builder(), token_size, change=True)
        for i, item in enumerate(windows)
    ]


def shards(
    root: Path,
    builder: Callable[[], DocumentBuilder],
    tile: int,
    path: str | None = None,
    token_size: int = DEFAULT_TOKEN_SIZE,
) -> list[TrainingSample]:
    """Samples of a prepared shard folder (`rsneo prepare`; default `data_root/shards`), read into memory.

    For small archives mixed with other sources; training on `data.sources=[shards]` alone streams them
    instead (`rsneo.train.datamodule`). `tile` is fixed when the shards were prepared.
    """
    folder = path if path else str(root / "shards")
    return [compose(sample, builder(), token_size) for sample in ShardDataset(folder)]


SOURCES: dict[str, Callable[..., list[TrainingSample]]] = {
    "sen1floods11": sen1floods11,
    "bigearthnet": bigearthnet,
    "timeseries": timeseries,
    "taizhou": taizhou,
    "captions": captions,
    "shards": shards,
    "torchgeo_raster": torchgeo_raster,
}


def head_imagery(name: str, root: Path) -> list[tuple[str, Path, str]] | None:
    """(head, raster, sensor) of each raster source `name` trains a head on, as the source above reads it
    (`rsneo export` measures their pixel sizes for the folder's domain.json); [] for sources that train no
    head (taizhou, captions: text and image objectives only), None for those whose imagery is the user's and
    not known from the run's config (shards, torchgeo_raster)."""
    if name == "sen1floods11":  # labelled chips and change sources: the Sentinel-2 bands
        chips = sen1floods11_chips(_require(root / "sen1floods11"))
        return [(head, c.s2, "sentinel2_l1c") for c in chips for head in ("segmentation", "change")]
    if name == "bigearthnet":  # change sources only (no masks): the Sentinel-2 L2A patches
        patches = bigearthnet_patches(_require(root / "bigearthnet" / "BigEarthNet-S2-Example"))
        return [("change", p.folder, "sentinel2_l2a") for p in patches if p.labels is not None]
    if name == "timeseries":  # change sources: the Pucallpa composites, read as Landsat-5 TM
        return [
            ("change", r, "landsat5_tm")
            for r in date_rasters(_require(root / "timeseries" / "landsat_pucallpa"))
        ]
    if name in ("taizhou", "captions"):
        return []
    return None


def corpus_texts(root: Path) -> list[str]:
    """Texts to train a small tokenizer on when the run has none: captions and the sentence templates."""
    texts = [
        class_share_sentence(np.array([0, 1, 1]), dict(enumerate(WATER_CLASSES))),
        change_sentence(1, 3, "2000", "2003"),
        "Land cover: " + ", ".join(f"class {i}" for i in range(10)),
    ]
    manifest = root / "text" / "rsicd_mini" / "rsicd_all_captions_amfmn.json"
    if manifest.is_file():
        for entry in list(json.loads(manifest.read_text()).values())[:3000]:
            texts += entry["captions"][:1]
    patches = root / "bigearthnet" / "BigEarthNet-S2-Example"
    for patch in bigearthnet_patches(patches) if patches.is_dir() else []:
        if patch.labels is not None:
            texts.append(scene_labels_sentence(list(patch.labels)))
    texts += [f"{y}:" for y in range(1980, 2030)]
    return texts
