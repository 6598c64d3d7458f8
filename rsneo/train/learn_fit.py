"""Training the segmentation head on labelled pixels (`rsneo learn`): its per-pixel decoder layers and one
vector per class, full batch, every class and every feature within it weighing the same, pulled back towards
the starting head (L2-SP) so a few labels do not undo it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from rsneo.errors import InputError
from rsneo.heads.segmentation import SegmentationHead
from rsneo.train.learn_config import LearnSettings
from rsneo.train.learn_pixels import LabelledPixels, Tick, merge_by_bands


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
