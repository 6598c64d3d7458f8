"""The labelled pixels `rsneo learn` trains on: labels burnt onto each raster, the backbone run once per
labelled window, and what the trainable layers need at each labelled pixel kept (the frozen decoder context,
the normalised bands, class and feature ids), so that a training step runs only the per-pixel layers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rsneo.data.documents import image_documents
from rsneo.data.frames import BandLayout, band_layout
from rsneo.errors import InputError
from rsneo.heads.features import image_features
from rsneo.io.labels import UNLABELLED, burn_labels
from rsneo.io.read import dataset_grid, open_input
from rsneo.io.windows import RasterWindows

Tick = Callable[[str, int], None]  # (task, advance) progress callback


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
