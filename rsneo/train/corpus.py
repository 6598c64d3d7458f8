"""Training documents from the sample archives: image frames, label sentences, captions and labelled chips.

Each source turns one archive layout under `data_root` into `Document`s (token ids, band groups, which
tokens the language-model loss learns) and, where masks exist, `LabelledChip`s for the segmentation
objective. Rasters are read with `rsneo.io.scene.read_scene` and cut into tiles of `tile` pixels (whole
image tokens of the model: `rsneo.train.datamodule.check_tile`).

Sources: `sen1floods11` (Sentinel-2 groups + Sentinel-1 VV/VH in one frame; water-share sentence; water
masks), `bigearthnet` (Sentinel-2 L2A + Sentinel-1; multi-label sentence), `timeseries` (Landsat
composites over Pucallpa, one frame per date, date-spaced), `taizhou` (two Landsat-7 dates;
change-statistics sentence), `captions` (RSICD scenes with their captions), `torchgeo_raster` (a user's
folder of GeoTIFFs of one sensor, windows drawn by TorchGeo's `RandomGeoSampler`; image only).

The first three also give change sources (Landsat-like band groups of each tile, and Pucallpa's real dates)
for the simulated-change objective (`rsneo.train.change`), and with `qa=True` question/answer documents in
`rsneo ask`'s chat layout (`chat_document`), the LM loss on the answer only: water share, land cover, and the
changed share of a simulated pair. The Taizhou pair is never a change source (held out).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from rsneo.data.archives import bigearthnet_patches, bigearthnet_s1_folder, date_rasters, sen1floods11_chips
from rsneo.data.datasets import random_raster_samples, sample_scene
from rsneo.data.documents import Document, DocumentBuilder
from rsneo.data.frames import frame_groups, normalise
from rsneo.data.recipes import tiles
from rsneo.data.shards import ShardDataset, shard_scene
from rsneo.errors import InputError
from rsneo.heads.generation import chat_prompt
from rsneo.io.read import PixelUnitsWarning
from rsneo.io.scene import read_scene
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

WATER_CLASSES = ("land", "water")  # Sen1Floods11 label values 0 and 1


@dataclass
class LabelledChip:
    """One frame's band groups with a per-pixel class map for label-as-text segmentation."""

    groups: list[ImageInput]
    labels: torch.Tensor  # (height, width) long, -1 = unlabelled
    class_names: tuple[str, ...]
    origin: tuple[int, int] = (0, 0)  # (row, col) of the chip's top-left pixel in its source raster


@dataclass
class Sample:
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
    scene: xr.DataArray, values: np.ndarray, window: tuple[slice, slice], token_size: int = DEFAULT_TOKEN_SIZE
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
) -> list[Sample]:
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
        samples.append(Sample(chat_document(builder(), [before, after], question, answer, dates)))
    return samples


def _require(path: Path) -> Path:
    if not path.exists():
        raise InputError(f"{path}: expected this sample file or folder under data_root, found none")
    return path


# ---- sources -----------------------------------------------------------------------------------------------


def sen1floods11(
    root: Path,
    builder: Callable[[], DocumentBuilder],
    tile: int,
    split: str = "all",
    qa: bool = False,
    token_size: int = DEFAULT_TOKEN_SIZE,
) -> list[Sample]:
    """Sen1Floods11 tiles. `split`: `train` = left half of each chip, `val` = right half, `all` = both.

    `qa`: also a water-share question and a description request per tile, and a simulated change pair's
    question, in the chat layout (the tile's chip and change source ride along)."""
    base = _require(root / "sen1floods11")
    samples: list[Sample] = []
    sources: list[ChangeSource] = []
    for chip in sen1floods11_chips(base):
        s2 = read_scene(chip.s2, sensor="sentinel2_l1c")
        s1 = read_scene(_require(chip.s1), sensor="sentinel1_grd")
        from rasterio import open as rio_open

        with rio_open(_require(chip.label)) as src:
            labels = src.read(1).astype(np.int64)  # -1 nodata, 0 land, 1 water
        v2, v1 = normalise(s2), normalise(s1)
        half = labels.shape[1] // 2
        for window in tiles(*labels.shape, tile):
            left = window[1].stop <= half
            right = window[1].start >= half
            if (split == "train" and not left) or (split == "val" and not right):
                continue
            mask = labels[window]
            if (mask < 0).mean() > 0.5:
                continue
            optical = frame_groups(s2, v2, 0, window, token_size=token_size)
            radar = frame_groups(s1, v1, 0, window, token_size=token_size)
            sentence = class_share_sentence(mask, dict(enumerate(WATER_CLASSES)), nodata=-1)
            doc = builder().frame(optical + radar).text(sentence, learn=True).end()
            origin = (window[0].start, window[1].start)
            chip = LabelledChip(optical, torch.from_numpy(mask.copy()), WATER_CLASSES, origin)
            source = change_source(s2, v2, window, token_size)
            samples.append(Sample(doc, chip, source))
            if qa:
                n, frame = len(sources), [optical]  # as `rsneo ask` reads a Sentinel-2 file
                question = WATER_QUESTIONS[n % len(WATER_QUESTIONS)]
                asked = chat_document(builder(), frame, question, water_answer(mask))
                samples.append(Sample(asked, chip, source))
                describe = chat_document(builder(), frame, LAND_COVER_QUESTIONS[1], flood_description(mask))
                samples.append(Sample(describe, chip, source))
            sources.append(source)
        if qa:
            samples += water_overview_samples(s2, v2, labels, split, builder, token_size)
    if qa:
        samples += change_qa_samples(sources, builder, seed=1)
    return samples


def water_overview_samples(
    scene: xr.DataArray,
    values: np.ndarray,
    labels: np.ndarray,
    split: str,
    builder: Callable[[], DocumentBuilder],
    token_size: int = DEFAULT_TOKEN_SIZE,
) -> list[Sample]:
    """Water questions about larger views of the split's half (128 px tiles, 256 px tiles and the whole half,
    these two averaged down 2x, as `rsneo ask` reads a whole raster at a reduced size); the answer is the
    share of the full-resolution labels."""
    import torch.nn.functional as F

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
        samples.append(Sample(chat_document(builder(), [groups], question, water_answer(mask))))
    return samples


def bigearthnet(
    root: Path,
    builder: Callable[[], DocumentBuilder],
    tile: int,
    qa: bool = False,
    token_size: int = DEFAULT_TOKEN_SIZE,
) -> list[Sample]:
    """BigEarthNet patches (120x120 at 10 m): the centre `tile` pixels (at most 96), with the label
    sentence; `qa`: also each land-cover question (chat layout) and a simulated change pair's question."""
    base = _require(root / "bigearthnet")
    size = min(tile, 96)
    samples: list[Sample] = []
    sources: list[ChangeSource] = []
    for patch in bigearthnet_patches(base / "BigEarthNet-S2-Example"):
        if patch.labels is None:
            continue
        labels = list(patch.labels)
        s2 = read_scene(patch.folder)
        start = (s2.sizes["y"] - size) // 2
        window = (slice(start, start + size), slice(start, start + size))
        values = normalise(s2)
        groups = frame_groups(s2, values, 0, window, token_size=token_size)
        source = change_source(s2, values, window, token_size)
        s1_folder = bigearthnet_s1_folder(patch, base / "BigEarthNet-S1-Example")
        if s1_folder is not None:
            s1 = read_scene(s1_folder, sensor="sentinel1_grd")
            if s1.sizes["y"] >= start + size:
                groups += frame_groups(s1, normalise(s1), 0, window, token_size=token_size)
        doc = builder().frame(groups).text(scene_labels_sentence(labels), learn=True).end()
        samples.append(Sample(doc, None, source))
        if qa:
            for question in LAND_COVER_QUESTIONS:
                qa_doc = chat_document(builder(), [groups], question, land_cover_answer(labels))
                samples.append(Sample(qa_doc, None, source))
        sources.append(source)
    if qa:
        samples += change_qa_samples(sources, builder, seed=2)
    return samples


def timeseries(
    root: Path,
    builder: Callable[[], DocumentBuilder],
    tile: int,
    qa: bool = False,
    token_size: int = DEFAULT_TOKEN_SIZE,
) -> list[Sample]:
    """Landsat composites over Pucallpa, 1985..2020: one frame per date with its year as text before it.

    Each tile's dates are also a change source (real date pairs, treated with care: see
    `rsneo.train.change`); `qa`: also a simulated change pair's question per tile."""
    base = _require(root / "timeseries" / "landsat_pucallpa")
    scene = read_scene(date_rasters(base), sensor="landsat5_tm", bands=["B5", "B4", "B3", "B2"])
    values = normalise(scene)
    years = [str(np.datetime_as_string(t, unit="Y")) for t in scene["time"].values]
    samples = []
    for window in tiles(scene.sizes["y"], scene.sizes["x"], tile):
        doc = builder()
        for t, year in enumerate(years):
            doc.text(f"{year}:", learn=False).frame(
                frame_groups(scene, values, t, window, token_size=token_size)
            )
        samples.append(Sample(doc.end(), None, change_source(scene, values, window, token_size)))
    if qa:
        samples += change_qa_samples([s.change for s in samples if s.change is not None], builder, seed=3)
    return samples


def taizhou(
    root: Path, builder: Callable[[], DocumentBuilder], tile: int, token_size: int = DEFAULT_TOKEN_SIZE
) -> list[Sample]:
    """Two Landsat-7 dates over Taizhou with the share of changed reference pixels of each tile as text."""
    from PIL import Image

    base = _require(root / "landsat_change_taizhou")
    scene = read_scene([base / "2000TM", base / "2003TM"])
    values = normalise(scene)
    changed = np.asarray(Image.open(_require(base / "change.bmp")).convert("L")) > 0
    unchanged = np.asarray(Image.open(_require(base / "unchanged.bmp")).convert("L")) > 0
    samples = []
    for window in tiles(scene.sizes["y"], scene.sizes["x"], tile):
        c, u = int(changed[window].sum()), int(unchanged[window].sum())
        if c + u == 0:
            continue
        doc = builder()
        for t, year in enumerate(("2000", "2003")):
            doc.text(f"{year}:", learn=False).frame(
                frame_groups(scene, values, t, window, token_size=token_size)
            )
        samples.append(Sample(doc.text(change_sentence(c, u, "2000", "2003"), learn=True).end()))
    return samples


def captions(
    root: Path, builder: Callable[[], DocumentBuilder], tile: int, token_size: int = DEFAULT_TOKEN_SIZE
) -> list[Sample]:
    """RSICD scenes (RGB): the centre crop of `tile` pixels (at least 64) followed by each of its captions."""
    base = _require(root / "text" / "rsicd_mini")
    size = max(tile, 64)
    samples = []
    for entry in json.loads(_require(base / "manifest.json").read_text()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PixelUnitsWarning)  # captioned photos have no georeference
            scene = read_scene(base / entry["image"], sensor="rgb")
        top, left = (scene.sizes["y"] - size) // 2, (scene.sizes["x"] - size) // 2
        groups = frame_groups(scene, normalise(scene), 0, (slice(top, top + size), slice(left, left + size)))
        for caption in dict.fromkeys(entry["captions"]):
            samples.append(Sample(builder().frame(groups).text(caption.strip(), learn=True).end()))
    return samples


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
) -> list[Sample]:
    """`count` seeded windows of `tile` pixels from a folder of GeoTIFFs of one sensor (`SensorRaster` +
    `RandomGeoSampler`), each one frame with no text: the image objectives learn from a user's own rasters.
    Each window is also a change source. `root` (data_root) is not used: the folder is the user's."""
    if not folder or not sensor:
        raise InputError("data=torchgeo_raster: expected data.root (a folder of GeoTIFFs) and data.sensor")
    samples = []
    for item in random_raster_samples(Path(folder).expanduser(), sensor, tile, count, seed, file_bands):
        scene = sample_scene(item)
        values = normalise(scene)
        document = builder().frame(frame_groups(scene, values, 0, token_size=token_size)).end()
        whole = (slice(None), slice(None))
        samples.append(Sample(document, None, change_source(scene, values, whole, token_size)))
    return samples


def shards(
    root: Path,
    builder: Callable[[], DocumentBuilder],
    tile: int,
    path: str | None = None,
    token_size: int = DEFAULT_TOKEN_SIZE,
) -> list[Sample]:
    """Samples of a prepared shard folder (`rsneo prepare`; default `data_root/shards`), read into memory.

    For small archives mixed with other sources; training on `data.sources=[shards]` alone streams them
    instead (`rsneo.train.datamodule`), one `shard_sample` at a time. `tile` is fixed when the shards were
    prepared.
    """
    folder = Path(path) if path else root / "shards"
    return [shard_sample(item, builder, token_size) for item in ShardDataset(_require(folder))]


def shard_sample(
    item: dict, builder: Callable[[], DocumentBuilder], token_size: int = DEFAULT_TOKEN_SIZE
) -> Sample:
    """One streamed shard sample as a document: its dates as frames (all arrays of a date, e.g. Sentinel-2
    and Sentinel-1, in one frame), then a sentence from its mask (class shares), scene labels or first
    caption. A mask on a grid of whole image tokens (the frames' `token_size`) also gives a labelled chip."""
    meta = item["meta"]
    scenes = [shard_scene(item, name) for name in meta["arrays"]]
    values = [normalise(scene) for scene in scenes]
    doc = builder()
    main = scenes[0]
    first_groups: list[ImageInput] = []
    for t in range(main.sizes["time"]):
        groups = [g for scene, v in zip(scenes, values, strict=True) if t < scene.sizes["time"]
                  for g in frame_groups(scene, v, t, token_size=token_size)]  # fmt: skip
        if main.sizes["time"] > 1:
            date = main["time"].values[t]
            doc.text(
                f"{'unknown date' if np.isnat(date) else str(date.astype('datetime64[D]'))}:", learn=False
            )
        doc.frame(groups)
        first_groups = first_groups or frame_groups(main, values[0], t, token_size=token_size)
    chip = None
    if "mask" in item:
        mask = item["mask"].numpy().astype(np.int64)
        names = dict(enumerate(meta.get("classes", ["background", "foreground"])))
        doc.text(class_share_sentence(mask, names, nodata=meta.get("mask_nodata", -1)), learn=True)
        size = first_groups[0].token_size
        if mask.shape[0] % size == 0 and mask.shape[1] % size == 0:
            chip = LabelledChip(first_groups, torch.from_numpy(mask), tuple(names.values()))
    elif meta.get("labels"):
        doc.text(scene_labels_sentence(meta["labels"]), learn=True)
    elif meta.get("captions"):
        doc.text(meta["captions"][0].strip(), learn=True)
    return Sample(doc.end(), chip)


SOURCES: dict[str, Callable[..., list[Sample]]] = {
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
