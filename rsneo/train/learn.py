"""`rsneo learn`: new classes from a few polygons or points, trained on top of a frozen backbone.

Why this is fast on a CPU: the backbone runs once per labelled window (its hidden states are cached),
then only the segmentation head trains: its light decoder (backbone features + a per-pixel stem over the raw
normalised bands) and one class vector per new class, initialised from the class name's prompt encoding.
The learnt vectors are stored beside the heads (`rsneo.heads.fewshot`), so `segment --classes <names>`
gives exactly the classes trained here.

What the head reads (`LearnSettings.features`): the backbone context and the raw bands ("all"), or the raw
bands only ("pixels": the context projection zeroed, for imagery the backbone never learnt, where its context
misleads a few labels); "auto" picks one by inner spatial hold-outs of the training features.

Honest scores: whole features (polygons, points) are held out by spatial blocks, never pixels of one feature
on both sides; the head is trained without them, scored on them (IoU, F1 per class, with "none of these"
counted as wrong, as `segment` would decide), then by default trained again on every feature for the model
that is written.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rsneo import metrics
from rsneo.atomic import atomic_folder
from rsneo.data.frames import BandLayout, band_layout
from rsneo.errors import InputError
from rsneo.heads.domain import HeadDomain, TrainingDomain, pixel_size
from rsneo.heads.fewshot import LEARN_RECORD, LearntClasses, _key, class_vectors, load_learnt, save_learnt
from rsneo.heads.segmentation import SegmentationHead, encode_class_prompts, image_documents, image_features
from rsneo.heads.system import System, save_system
from rsneo.heads.vocabulary import DEFAULT_MATCH_THRESHOLD, TrainedClass, Vocabulary
from rsneo.io.labels import UNLABELLED, burn_labels, read_labels
from rsneo.io.read import dataset_grid, open_input
from rsneo.io.windows import RasterWindows

Tick = Callable[[str, int], None]  # (task, advance) progress callback


@dataclass
class LearnSettings:
    """How the head is trained; recorded in learn.json."""

    steps: int = 300
    lr: float = 3e-3
    weight_decay: float = 1e-4
    # L2 pull of the trained decoder layers back to the starting model's (L2-SP), divided by the number of
    # training features: a prior worth a fixed number of labels, strong with 5 points, faint with 500
    anchor: float = 1.0
    window: int = 256  # pixels a side, whole image tokens of the model (multiples of 32 for NEO)
    windows_per_step: int = 8
    holdout: float = 0.25  # share of each class's features held out for the score
    blocks: int = 4  # the labels' extent is cut into blocks x blocks squares for the hold-out
    refit: bool = True  # train again on every feature for the written model
    seed: int = 0
    # what the head reads: "all" (the backbone's context and the raw bands, through the per-pixel stem),
    # "pixels" (the raw bands only: the context projection is zeroed and frozen), or "auto": the one with the
    # better mean IoU on an inner spatial hold-out of the training features (never the scored hold-out)
    features: str = "auto"
    select_rounds: int = 2  # inner hold-out splits (other seeds) summed for "auto"


FEATURES = ("auto", "all", "pixels")


@dataclass
class LabelledRaster:
    """One raster with its labels burnt onto its grid."""

    path: Path
    layout: BandLayout
    classes: np.ndarray  # (height, width) int64 class index, UNLABELLED elsewhere
    feature: np.ndarray  # (height, width) int64 feature index, UNLABELLED elsewhere


@dataclass
class LabelledPixels:
    """What the trainable layers need at the labelled pixels of one window, computed once.

    `context` is the frozen part of the decoder (token features mixed at 1/8 resolution, bilinearly
    upsampled) at each labelled pixel: the trainable per-pixel layers are all that runs in a training step.
    """

    context: Tensor  # (c, n) float32
    pixels: Tensor  # (bands, n) normalised band values
    wavelengths: Tensor  # (bands,)
    classes: Tensor  # (n,) long
    feature: Tensor  # (n,) long

    def subset(self, keep: Tensor) -> LabelledPixels:
        """The pixels where `keep` (n,) is true."""
        return LabelledPixels(
            self.context[:, keep],
            self.pixels[:, keep],
            self.wavelengths,
            self.classes[keep],
            self.feature[keep],
        )


# ---- spatial hold-out --------------------------------------------------------------------------------------


def spatial_holdout(
    centres: np.ndarray, class_ids: np.ndarray, share: float, blocks: int, seed: int
) -> np.ndarray:
    """(features,) bool: whole spatial blocks of features held out, about `share` of each class's features.

    The extent of `centres` (features, 2) is cut into `blocks` x `blocks` squares taken in a random order; a
    square goes to the hold-out while some class still has less than `share` held out and no class would be
    left without a training feature. A class with a single feature is never held out (it gets no score).
    """
    rng = np.random.default_rng(seed)
    lo, hi = centres.min(0), centres.max(0)
    size = np.where(hi > lo, (hi - lo) / blocks, 1.0)
    cell = np.minimum(((centres - lo) / size).astype(int), blocks - 1)
    block = cell[:, 0] * blocks + cell[:, 1]
    n_classes = int(class_ids.max()) + 1
    total = np.bincount(class_ids, minlength=n_classes)
    held = np.zeros(len(centres), bool)
    for b in rng.permutation(np.unique(block)):
        counts = np.bincount(class_ids[held], minlength=n_classes)
        if np.all((counts >= share * total) | (total < 2)):
            break
        take = block == b
        after = counts + np.bincount(class_ids[take], minlength=n_classes)
        if np.any((after >= total) & (total > 0)):
            continue  # would leave a class with nothing to train on
        gain = np.bincount(class_ids[take], minlength=n_classes)
        if not np.any((gain > 0) & (counts < share * total)):
            continue  # adds only classes already held out enough
        held |= take
    return held


# ---- backbone features of the labelled windows -------------------------------------------------------------


def labelled_windows(
    system, rasters: Sequence[LabelledRaster], window: int, tick: Tick | None = None
) -> list[LabelledPixels]:
    """Run the backbone and the frozen decoder context once over every window holding labels."""
    head = system.segmentation
    out = []
    for raster in rasters:
        with open_input(raster.path) as src:
            reader = RasterWindows([src])
            for row, col in window_starts(raster.classes, window):
                pixels, valid = reader.read(row, col, window)
                classes = _crop(raster.classes, row, col, window)
                feature = _crop(raster.feature, row, col, window)
                mask = torch.from_numpy((classes >= 0) & valid)
                if mask.any():
                    inputs = image_documents(
                        [[raster.layout.images(pixels, valid, system.config.token_size)]], system.config
                    )
                    with torch.no_grad():  # not inference_mode: these tensors feed autograd later
                        feats = image_features(
                            system.model, inputs.to(system.device), head.config.early_layer
                        )
                        dtype = next(head.parameters()).dtype  # a bf16 backbone may feed a float32 head
                        last, early = (t[:, 0].to(dtype) for t in (feats.last, feats.early))
                        context = head.decoder.context(last, early)  # (1, c, 4r, 4c)
                        context = F.interpolate(
                            context, size=(window, window), mode="bilinear", align_corners=False
                        )
                    out.append(
                        LabelledPixels(
                            context[0][:, mask.to(context.device)].float().cpu(),
                            feats.pixels[0, 0][:, mask.to(feats.pixels.device)].float().cpu(),
                            feats.wavelengths.float().cpu(),
                            torch.from_numpy(classes)[mask],
                            torch.from_numpy(feature)[mask],
                        )
                    )
                if tick is not None:
                    tick("features", 1)
    return out


def window_starts(classes: np.ndarray, window: int) -> Iterator[tuple[int, int]]:
    """Top-left corners of the non-overlapping windows that hold at least one label."""
    height, width = classes.shape
    for row in range(0, height, window):
        for col in range(0, width, window):
            if (classes[row : row + window, col : col + window] >= 0).any():
                yield row, col


def count_windows(rasters: Sequence[LabelledRaster], window: int) -> int:
    return sum(len(list(window_starts(r.classes, window))) for r in rasters)


def _crop(array: np.ndarray, row: int, col: int, size: int) -> np.ndarray:
    out = np.full((size, size), UNLABELLED, np.int64)
    part = array[row : row + size, col : col + size]
    out[: part.shape[0], : part.shape[1]] = part
    return out


# ---- training and scoring ----------------------------------------------------------------------------------


def pixel_logits(head: SegmentationHead, samples: LabelledPixels, vectors: Tensor) -> Tensor:
    """(K, n) logits at the labelled pixels, exactly as `head(features, vectors)` gives them there."""
    projected = head.decoder.to_full(samples.context[None, :, :, None])  # (1, f, n, 1)
    fused = head.decoder.fuse(projected, samples.pixels[None, :, :, None], samples.wavelengths)
    return head.match(F.normalize(fused, dim=1), vectors)[0, :, :, 0]


def pixel_weights(windows: Sequence[LabelledPixels], use: Tensor, n_classes: int) -> Tensor:
    """(features,) weight of one pixel of each feature: every class weighs the same, and within a class every
    feature weighs the same however many pixels it covers (one big polygon does not drown the small ones)."""
    n_features = len(use)
    pixels = torch.zeros(n_features)
    class_of = torch.full((n_features,), -1, dtype=torch.long)
    for w in windows:
        keep = use[w.feature]
        pixels += torch.bincount(w.feature[keep], minlength=n_features).float()
        class_of[w.feature[keep]] = w.classes[keep]
    present = pixels > 0
    per_class = torch.bincount(class_of[present], minlength=n_classes).float()
    weights = torch.zeros(n_features)
    weights[present] = 1.0 / (pixels[present] * per_class[class_of[present]] * (per_class > 0).sum())
    return weights


TRAINED = ("decoder.to_full", "decoder.stem", "decoder.stem_to_full", "decoder.out", "log_scale")
CONTEXT_WEIGHT = "decoder.to_full.weight"  # zeroed and frozen when the head reads the raw bands only


def trained_parameters(head: SegmentationHead, features: str) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters `fit_head` trains for `features` ("all" or "pixels")."""
    return [
        (n, p)
        for n, p in head.named_parameters()
        if n.startswith(TRAINED) and not (features == "pixels" and n == CONTEXT_WEIGHT)
    ]


def fit_head(
    head: SegmentationHead,
    init_vectors: Tensor,
    windows: Sequence[LabelledPixels],
    use: Tensor,
    settings: LearnSettings,
    tick: Tick | None = None,
) -> tuple[SegmentationHead, Tensor]:
    """A trained copy of `head` and (K, hidden) class vectors, from the pixels of the features in `use`.

    Trains the decoder's per-pixel layers (`TRAINED`) and the class vectors on every selected pixel each
    step (full batch); the token context and the class projection stay as they are.
    """
    if settings.features not in ("all", "pixels"):
        raise ValueError(f"fit_head: features must be 'all' or 'pixels', got {settings.features!r}")
    torch.manual_seed(settings.seed)
    head = copy.deepcopy(head).float().cpu().train()
    if settings.features == "pixels":
        with torch.no_grad():
            head.get_parameter(CONTEXT_WEIGHT).zero_()
    vectors = torch.nn.Parameter(init_vectors.detach().float().clone())
    trained = trained_parameters(head, settings.features)
    params = [p for _, p in trained] + [vectors]
    optimiser = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=settings.lr, total_steps=max(settings.steps, 1), pct_start=0.1
    )
    weights = pixel_weights(windows, use, init_vectors.shape[0])
    active = merge_by_bands([w.subset(use[w.feature]) for w in windows if use[w.feature].any()])
    if not active:
        raise InputError("no labelled pixels left to train on (every feature is held out or off the raster)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a few thousand pixels: threads only add synchronisation (15x slower on 2
    try:  # busy cores)
        anchors = [(p, p.detach().clone()) for _, p in trained]
        strength = settings.anchor / max(int(use.sum()), 1)
        _train(head, vectors, active, weights, optimiser, schedule, settings.steps, (strength, anchors), tick)
    finally:
        torch.set_num_threads(threads)
    head.eval()
    return head, vectors.detach()


def _train(
    head, vectors, active, weights, optimiser, schedule, steps: int, anchor, tick: Tick | None
) -> None:
    strength, anchors = anchor
    for _ in range(steps):
        loss = torch.zeros(())
        if strength > 0:
            loss = strength * sum(((p - p0) ** 2).sum() for p, p0 in anchors)
        for w in active:
            logits = pixel_logits(head, w, vectors)  # (K, n)
            # with segment's "none of these" logit in the softmax, a pixel is trained until segment would
            # give it its class, not merely until its class beats the others
            none = (head.scale * head.config.none_threshold).expand_as(logits[:1])
            ce = F.cross_entropy(torch.cat([logits, none]).T, w.classes, reduction="none")  # (n,)
            loss = loss + (ce * weights[w.feature]).sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if tick is not None:
            tick("training", 1)


@dataclass
class Choice:
    """What the head reads ("all" or "pixels") and, for "auto", the inner hold-out loss of each."""

    features: str
    inner_loss: dict[str, float] = field(default_factory=dict)
    inner_features: int = 0  # training features held out, summed over the inner splits


def choose_features(
    head: SegmentationHead,
    init_vectors: Tensor,
    windows: Sequence[LabelledPixels],
    use: Tensor,
    centres: np.ndarray,
    feature_classes: np.ndarray,
    settings: LearnSettings,
    tick: Tick | None = None,
) -> Choice:
    """`settings.features`, or for "auto" the better of "all" and "pixels" on inner spatial hold-outs of the
    features in `use` (whole blocks of the training features, `select_rounds` splits of other seeds): the
    features of the scored hold-out are never seen. "Better" is the lower held-out cross-entropy, weighted as
    in training (every class, and every feature within it, weighs the same; "none of these" counts as
    wrong): unlike IoU over a few held-out points it rarely ties, and it also tells how sure a right answer
    is. Ties go to "all"."""
    if settings.features != "auto":
        return Choice(settings.features)
    index = np.flatnonzero(use.numpy())
    k = int(feature_classes.max()) + 1
    loss = {"all": 0.0, "pixels": 0.0}
    held_total = 0
    for r in range(max(settings.select_rounds, 1)):
        inner = spatial_holdout(
            centres[index], feature_classes[index], settings.holdout or 0.25, settings.blocks,
            settings.seed + 1 + r,
        )  # fmt: skip
        if not inner.any():
            continue
        held_total += int(inner.sum())
        train = torch.zeros(len(use), dtype=torch.bool)
        train[index[~inner]] = True
        check = torch.zeros(len(use), dtype=torch.bool)
        check[index[inner]] = True
        for mode in loss:
            trial = replace(settings, features=mode, seed=settings.seed + 1 + r)
            fitted, vectors = fit_head(head, init_vectors, windows, train, trial, tick)
            loss[mode] += holdout_loss(fitted, vectors, windows, check, k)
    if held_total == 0:
        return Choice("all")
    best = "pixels" if loss["pixels"] < loss["all"] else "all"
    return Choice(best, {m: round(v, 5) for m, v in loss.items()}, held_total)


def held_out_logits(
    head: SegmentationHead, vectors: Tensor, windows: Sequence[LabelledPixels], use: Tensor
) -> Iterator[tuple[LabelledPixels, Tensor]]:
    """Each window's pixels of the features in `use` with their class logits (K, n), without gradients."""
    for w in windows:
        keep = use[w.feature]
        if keep.any():
            w = w.subset(keep)
            with torch.no_grad():  # not around the yield: grad mode would stay off in the caller's code
                logits = pixel_logits(head, w, vectors)
            yield w, logits


@torch.no_grad()
def holdout_loss(
    head: SegmentationHead, vectors: Tensor, windows: Sequence[LabelledPixels], use: Tensor, k: int
) -> float:
    """Cross-entropy (with segment's "none of these" logit) over the pixels of the features in `use`, every
    class and every feature within it weighing the same (`pixel_weights`, as in training)."""
    weights = pixel_weights(windows, use, k)
    total = 0.0
    for w, logits in held_out_logits(head, vectors, windows, use):
        none = (head.scale * head.config.none_threshold).expand_as(logits[:1])
        ce = F.cross_entropy(torch.cat([logits, none]).T, w.classes, reduction="none")
        total += float((ce * weights[w.feature]).sum())
    return total


def selection_fits(settings: LearnSettings) -> int:
    """Trainings that `choose_features` runs (for the progress bar)."""
    return 2 * max(settings.select_rounds, 1) if settings.features == "auto" else 0


def merge_by_bands(windows: Sequence[LabelledPixels]) -> list[LabelledPixels]:
    """One `LabelledPixels` per band set (windows of rasters with the same bands are concatenated)."""
    groups: dict[tuple[float, ...], list[LabelledPixels]] = {}
    for w in windows:
        groups.setdefault(tuple(w.wavelengths.tolist()), []).append(w)
    return [
        LabelledPixels(
            torch.cat([w.context for w in ws], 1),
            torch.cat([w.pixels for w in ws], 1),
            ws[0].wavelengths,
            torch.cat([w.classes for w in ws]),
            torch.cat([w.feature for w in ws]),
        )  # fmt: skip
        for ws in groups.values()
    ]


@dataclass
class ClassScore:
    iou: float | None
    f1: float | None
    pixels: int  # held-out pixels of this class
    features: int  # held-out features of this class


def holdout_scores(
    head: SegmentationHead,
    vectors: Tensor,
    windows: Sequence[LabelledPixels],
    use: Tensor,
    names: Sequence[str],
    feature_classes: np.ndarray,
) -> dict[str, ClassScore]:
    """IoU and F1 per class over the pixels of the features in `use`, decided as `segment` decides
    ("none of these" counts as wrong); None where a class has no such pixel."""
    k = len(names)
    confusion = holdout_confusion(head, vectors, windows, use, k)
    held = np.bincount(feature_classes[use.numpy()], minlength=k)
    return scores_from_confusion(confusion, names, held)


def holdout_confusion(
    head: SegmentationHead, vectors: Tensor, windows: Sequence[LabelledPixels], use: Tensor, k: int
) -> np.ndarray:
    """(k, k + 1) reference x predicted pixel counts over the features in `use` (last column: none of
    these, as `segment` decides)."""
    confusion = np.zeros((k, k + 1), np.int64)
    for w, logits in held_out_logits(head, vectors, windows, use):
        predicted = head.probabilities(logits[None, :, :, None])[0, :, :, 0].argmax(0)
        np.add.at(confusion, (w.classes.numpy(), predicted.numpy()), 1)
    return confusion


def scores_from_confusion(
    confusion: np.ndarray, names: Sequence[str], features: np.ndarray | None = None
) -> dict[str, ClassScore]:
    """Per-class IoU and F1 (`rsneo.metrics`) from a reference x predicted table; None where a class has no
    reference pixel."""
    measured = metrics.scores(confusion, names).per_class
    out = {}
    for c, name in enumerate(names):
        s = measured[name]
        held = s.support > 0
        features_c = int(features[c]) if features is not None else 0
        out[name] = ClassScore(s.iou if held else None, s.f1 if held else None, s.support, features_c)
    return out


# ---- the whole command -------------------------------------------------------------------------------------


@dataclass
class LearnResult:
    out: Path
    classes: list[str]
    scores: dict[str, ClassScore]
    record: dict = field(default_factory=dict)


def prepare_rasters(
    rasters: Sequence[Path], labels, sensor: str | None = None, bands: list[str] | None = None
) -> list[LabelledRaster]:
    """Burn `labels` (a LabelFile) onto each raster; a raster the labels miss is an InputError."""
    out = []
    for path in map(Path, rasters):
        if not path.exists():
            raise InputError(f"{path}: file not found")
        layout = band_layout(path, sensor, bands)
        with open_input(path) as src:
            grid = dataset_grid(src)
        burnt = burn_labels(labels, grid)
        if not (burnt.classes >= 0).any():
            bounds = ", ".join(f"{v:.6g}" for v in grid.bounds)
            crs = grid.crs.to_string() if grid.crs is not None else "pixel units"
            raise InputError(
                f"{labels.path}: no labelled feature overlaps the raster {path} "
                f"(raster bounds {bounds} in {crs}); expected polygons or points drawn on it"
            )
        out.append(LabelledRaster(path, layout, burnt.classes, burnt.feature))
    return out


def feature_centres(labels) -> np.ndarray:
    """(features, 2) centre of each feature (representative point) in the label file's coordinates."""
    points = labels.frame.geometry.representative_point()
    return np.stack([points.x.to_numpy(), points.y.to_numpy()], axis=1)


def learn(
    system,
    rasters: Sequence[Path],
    labels_path: Path,
    class_field: str,
    out: Path,
    *,
    settings: LearnSettings = LearnSettings(),
    sensor: str | None = None,
    bands: list[str] | None = None,
    overwrite: bool = False,
    show_progress: bool = False,
) -> LearnResult:
    """Learn the classes of `class_field` in `labels_path` on `rasters`; write a model folder `out`."""
    token = system.config.token_size  # windows hold whole image tokens of the model
    if settings.window <= 0 or settings.window % token:
        raise InputError(f"--window: expected a positive multiple of {token} pixels, got {settings.window}")
    if settings.steps < 1:
        raise InputError(f"--steps: expected at least 1, got {settings.steps}")
    if not 0.0 <= settings.holdout < 1.0:
        raise InputError(f"--holdout: expected a share in [0, 1), got {settings.holdout}")
    if settings.features not in FEATURES:
        raise InputError(f"--features: expected one of {', '.join(FEATURES)}, got {settings.features!r}")
    out = Path(out)
    check_destination(out, overwrite)
    labels = read_labels(labels_path, class_field)
    prepared = prepare_rasters(rasters, labels, sensor, bands)
    names = labels.classes
    feature_classes = labels.class_ids
    n_features = len(feature_classes)
    held = np.zeros(n_features, bool)
    if settings.holdout > 0:
        held = spatial_holdout(
            feature_centres(labels), feature_classes, settings.holdout, settings.blocks, settings.seed
        )
    fits = 1 + int(settings.holdout > 0 and held.any() and settings.refit)
    total_windows = count_windows(prepared, settings.window)
    total_steps = (fits + selection_fits(settings)) * settings.steps
    with _progress(show_progress, total_windows, total_steps) as tick:
        windows = labelled_windows(system, prepared, settings.window, tick)
        with torch.no_grad():
            init = encode_class_prompts(system.model, system.tokenizer, names, system.segmentation.config)
        init = init.float().cpu()
        train_use = torch.from_numpy(~held)
        # chosen without the scored hold-out, then kept for the final fit on every feature
        choice = choose_features(
            system.segmentation, init, windows, train_use, feature_centres(labels), feature_classes, settings,
            tick,
        )  # fmt: skip
        chosen = replace(settings, features=choice.features)
        head, vectors = fit_head(system.segmentation, init, windows, train_use, chosen, tick)
        scores = holdout_scores(head, vectors, windows, torch.from_numpy(held), names, feature_classes)
        if fits == 2:
            everything = torch.ones(n_features, dtype=torch.bool)
            head, vectors = fit_head(system.segmentation, init, windows, everything, chosen, tick)
    record = learn_record(
        system, prepared, labels, settings, held, scores, [len(windows), total_windows], fits == 2
    )
    record["features"] = asdict(choice)
    if choice.features == "pixels":
        record["frozen"].append(f"segmentation.{CONTEXT_WEIGHT} (zeroed: the head reads the raw bands only)")
    record["base_classes"] = base_classes_kept(system, head, windows, names)
    learnt = with_base_learnt(system, LearntClasses(list(names), vectors), record["base_classes"]["kept"])
    write_model_folder(system, head, learnt, record, out, overwrite)
    return LearnResult(out, list(names), scores, record)


AGREEMENT = 0.9  # a base class stays in the vocabulary when the learnt head still decides it like the base


def base_classes_kept(system, head: SegmentationHead, windows, learnt_names) -> dict:
    """Which trained classes of the starting model remain usable with the retrained head.

    On every labelled pixel, the base head and the retrained one decide among the base model's vocabulary
    classes (prompt or learnt vectors, "none of these" included), as `segment --classes <them>` would. A class
    is kept when the two decisions agree (IoU of its two masks) at least `AGREEMENT`, or when neither head
    gives it any pixel while all decisions agree that often; a name the user taught again is replaced.
    Returns {"kept": {name: agreement or None}, "dropped": {name: agreement}, "pixel_agreement": float}.
    """
    vocabulary = getattr(system, "vocabulary", None)
    taught = {_key(n) for n in learnt_names}
    names = [n for n in (vocabulary.names if vocabulary is not None else ()) if _key(n) not in taught]
    if not names or not windows:
        return {"kept": {}, "dropped": {}, "pixel_agreement": None}
    with torch.no_grad():
        base_vectors = class_vectors(system, names).float().cpu()
        base_head = copy.deepcopy(system.segmentation).float().cpu().eval()
        decisions = []
        for model in (base_head, head.float().cpu()):
            out = []
            for w in windows:
                logits = pixel_logits(model, w, base_vectors)
                out.append(model.probabilities(logits[None, :, :, None])[0, :, :, 0].argmax(0))
            decisions.append(torch.cat(out))
    before, after = decisions
    pixel_agreement = float((before == after).float().mean())
    kept, dropped = {}, {}
    for c, name in enumerate(names):
        union = int(((before == c) | (after == c)).sum())
        agreement = int(((before == c) & (after == c)).sum()) / union if union else None
        ok = agreement >= AGREEMENT if agreement is not None else pixel_agreement >= AGREEMENT
        (kept if ok else dropped)[name] = None if agreement is None else round(agreement, 4)
    return {"kept": kept, "dropped": dropped, "pixel_agreement": round(pixel_agreement, 4)}


def with_base_learnt(system, learnt, kept: dict):
    """`learnt` plus the learnt vectors of kept base classes (a starting folder that was itself learnt), so
    that those names keep the vectors they were checked with."""
    base = load_learnt(system.folder) if system.folder is not None else None
    extra = [(n, base.lookup(n)) for n in kept] if base is not None else []
    extra = [(n, v) for n, v in extra if v is not None]
    if not extra:
        return learnt
    vectors = torch.cat([learnt.vectors, torch.stack([v.float().cpu() for _, v in extra])])
    return LearntClasses(learnt.names + [n for n, _ in extra], vectors)


def learn_record(system, prepared, labels, settings, held, scores, windows, refit) -> dict:
    """What learn.json says: the classes, where they came from, how they were trained and scored."""
    ids = labels.class_ids
    on_raster = set()
    for r in prepared:
        on_raster |= set(np.unique(r.feature[r.feature >= 0]).tolist())
    seen = np.zeros(len(ids), bool)
    seen[list(on_raster)] = True
    counts = {
        name: {
            "features": int((ids == k).sum()),
            "on_rasters": int(((ids == k) & seen).sum()),
            "held_out": int(((ids == k) & held & seen).sum()),
            "pixels": int(sum(int((r.classes == k).sum()) for r in prepared)),
        }
        for k, name in enumerate(labels.classes)
    }
    return {
        "learnt_classes": list(labels.classes),
        "labels": str(Path(labels.path).resolve()),
        "class_field": labels.field,
        "rasters": [str(Path(r.path).resolve()) for r in prepared],
        "sensor": prepared[0].layout.sensor,
        "bands": list(prepared[0].layout.band_names),
        "base_model": str(system.folder) if system.folder is not None else None,
        "trained": [f"segmentation.{n}" for n in TRAINED] + ["learnt class vectors"],
        "frozen": [
            "backbone",
            "segmentation.decoder.tokens",
            "segmentation.decoder.up",
            "segmentation.class_proj",
            "change head",
        ],
        "settings": asdict(settings),
        "labelled_windows": windows[0],
        "counts": counts,
        "holdout": {
            "method": f"whole features held out by spatial blocks ({settings.blocks}x{settings.blocks} over "
            f"the labels' extent), about {settings.holdout:.0%} of each class",
            "scores": {name: asdict(s) for name, s in scores.items()},
            "mean_iou": mean_score(scores, "iou"),
            "mean_f1": mean_score(scores, "f1"),
            "written_model": "trained again on every feature" if refit else "trained without the hold-out",
        },
    }


def mean_score(scores: dict[str, ClassScore], key: str) -> float | None:
    values = [getattr(s, key) for s in scores.values() if getattr(s, key) is not None]
    return float(np.mean(values)) if values else None


# ---- output ------------------------------------------------------------------------------------------------


def check_destination(out: Path, overwrite: bool) -> None:
    """Refuse an existing non-empty folder (unless `overwrite`) before any work starts."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"--out {out}: folder exists and is not empty (pass --overwrite to replace it)")


def learnt_vocabulary(head: SegmentationHead, record: dict, base=None):
    """The folder's vocabulary.json: the learnt classes with their hold-out scores, then the starting model's
    trained classes (`base`, its Vocabulary) that `base_classes_kept` found still decided as before, with the
    base scores and that agreement; the others are left out (named in learn.json)."""
    holdout = record["holdout"]
    data = f"rsneo learn hold-out ({holdout['method']}) of {Path(record['labels']).name}; learn.json"
    classes = []
    for name in record["learnt_classes"]:
        score = holdout["scores"][name]
        held_out = (
            {} if score["iou"] is None else {"iou": round(score["iou"], 4), "f1": round(score["f1"], 4)}
        )
        prompt = head.config.prompt_template.format(name.strip())
        classes.append(TrainedClass(name, (prompt,), held_out | ({"data": data} if held_out else {})))
    kept = record.get("base_classes", {}).get("kept", {})
    for trained in base.classes if base is not None else ():
        if trained.name in kept:
            agreement = kept[trained.name]
            how = f"IoU {agreement:.3f}" if agreement is not None else "not decided on any labelled pixel"
            note = (
                f"starting model's class; after rsneo learn, decided as before on the labelled pixels ({how})"
            )
            classes.append(replace(trained, held_out=trained.held_out | {"learn": note}))  # synonyms kept
    note = f"Classes learnt by rsneo learn from {record['labels']} (field {record['class_field']!r})"
    if kept:
        note += f", and the starting model's {', '.join(kept)}"
    threshold = base.match_threshold if base is not None else DEFAULT_MATCH_THRESHOLD
    return Vocabulary(tuple(classes), threshold, note + ".")


def learnt_domain(record: dict, base: TrainingDomain | None = None) -> TrainingDomain:
    """The folder's domain.json: the segmentation head was last trained on the learn rasters (their sensor
    and measured pixel sizes; unknown without georeference); the change head, untouched, keeps the starting
    model's record (none when it had none)."""
    segmentation = HeadDomain(())
    for raster in record["rasters"]:
        segmentation = segmentation.including(record["sensor"], pixel_size(Path(raster)))
    heads = {"segmentation": segmentation}
    if base is not None and "change" in base.heads:
        heads["change"] = base.heads["change"]
    return TrainingDomain(heads, f"Segmentation head retrained by rsneo learn on {len(record['rasters'])} "
                                 "raster(s) (learn.json); change head as the starting model's.")  # fmt: skip


def write_model_folder(system, head, learnt, record: dict, out: Path, overwrite: bool) -> Path:
    """Write the model folder to a hidden temporary folder beside `out`, then rename it into place."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    check_destination(out, overwrite)
    with atomic_folder(out) as tmp:
        head = head.to(system.device)
        vocabulary = learnt_vocabulary(head, record, getattr(system, "vocabulary", None))
        domain = learnt_domain(record, getattr(system, "domain", None))
        learnt_system = System(
            system.model, system.tokenizer, head, system.change, vocabulary=vocabulary, domain=domain
        )
        save_system(learnt_system, tmp)
        save_learnt(tmp, learnt)
        (tmp / LEARN_RECORD).write_text(json.dumps(record, indent=1))
    return out


@contextmanager
def _progress(show: bool, windows: int, steps: int) -> Iterator[Tick | None]:
    """A rich progress bar with one line for the backbone pass and one for training."""
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    bar = Progress(*columns, console=Console(stderr=True))
    tasks = {name: bar.add_task(name, total=n) for name, n in (("features", windows), ("training", steps))}
    with bar:
        yield lambda task, n: bar.advance(tasks[task], n)
