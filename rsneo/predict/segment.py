"""`rsneo segment`: open-vocabulary segmentation of a raster into a COG, polygons, QGIS style and project."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsneo.data.documents import image_documents
from rsneo.data.frames import BandLayout, band_layout, model_band_groups
from rsneo.errors import InputError
from rsneo.heads.domain import UNVERIFIED_TITLE, check_inputs
from rsneo.heads.features import image_features
from rsneo.heads.fewshot import class_vectors
from rsneo.heads.system import System
from rsneo.heads.vocabulary import untrained_classes
from rsneo.io import qgis  # module attribute at call time: the resume tests stop a run inside it
from rsneo.io.cog import ClassLegend, check_writable, gdal_env
from rsneo.io.read import open_input, warn_pixel_units
from rsneo.io.runstate import fingerprint, folder_fingerprint, output_lock, remove_temporaries
from rsneo.io.vector import write_class_polygons
from rsneo.model.inputs import ModelInputs
from rsneo.predict.sliding_window import (
    RasterWindows,
    WindowPlan,
    confidence_path,
    predict_raster,
    run_signature,
)

NONE_OF_THESE = "none of these"


def parse_classes(text: str | list[str]) -> list[str]:
    """ "water, forest,built-up" -> ["water", "forest", "built-up"]; an empty list is an InputError."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    if not names:
        raise InputError(f"--classes: expected a comma-separated list of class names, got {text!r}")
    if len(set(n.lower() for n in names)) != len(names):
        raise InputError(f"--classes: class names must differ, got {names}")
    return names


def window_inputs(
    layouts: Sequence[BandLayout], pixels: np.ndarray, valid: np.ndarray, config: Any, policy: str = "frame"
) -> ModelInputs:
    """Windows read by `RasterWindows` -> the model's inputs: one document per window, one frame per date.

    `pixels` (B, bands, S, S) for one raster (one layout) or (B, dates, bands, S, S) for aligned dates (a
    layout each); `valid` (B, S, S). `config` (an `RSNeoConfig`) gives the token size and image token ids;
    `policy="scene"` lets the dates of a window see each other.
    """
    if pixels.ndim == 4:
        pixels = pixels[:, None]
    token = config.token_size
    frames = [
        [layout.images(sample[t], v, token) for t, layout in enumerate(layouts)]
        for sample, v in zip(pixels, valid, strict=True)
    ]
    return image_documents(frames, config, policy=policy)


class SegmentationPredictor:
    """The `predict_fn` of the sliding-window engine: windows -> class probabilities plus "none of these"."""

    def __init__(
        self, system: System, layout: BandLayout, class_names: list[str], none_threshold: float | None = None
    ) -> None:
        self.system, self.layout, self.none_threshold = system, layout, none_threshold
        with torch.inference_mode():
            self.class_vectors = class_vectors(system, class_names)  # (K, hidden); learnt classes first

    @torch.inference_mode()
    def __call__(self, pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
        # pixels (B, bands, S, S), valid (B, S, S) -> (B, K + 1, S, S)
        head = self.system.segmentation
        inputs = window_inputs([self.layout], pixels, valid, self.system.config).to(self.system.device)
        features = image_features(self.system.model, inputs, head.config.early_layer)
        probs = head.probabilities(head(features, self.class_vectors), self.none_threshold)
        return probs.float().cpu().numpy()


@dataclass
class SegmentOutputs:
    cog: Path
    gpkg: Path
    qml: Path
    qgz: Path
    confidence: Path | None  # winning probability in percent, when asked for
    areas: dict[str, float]  # class name -> hectares (or integer pixel counts without a CRS)
    area_unit: str  # "ha" or "px"
    notes: tuple[str, ...] = ()  # caveats also written into the outputs (input outside the training data)


def segment_raster(
    system: System,
    raster: Path,
    class_names: list[str],
    out_dir: Path,
    *,
    plan: WindowPlan = WindowPlan(),
    sensor: str | None = None,
    bands: list[str] | None = None,
    none_threshold: float | None = None,
    confidence: bool = True,
    show_progress: bool = False,
    stop_after_rows: int | None = None,
    strict: bool = False,
) -> SegmentOutputs | None:
    """Segment `raster` into `out_dir`: `<stem>_classes.tif` (COG), `.gpkg`, `.qml` and `<stem>.qgz`.

    Resumes an interrupted run with the same settings (a run killed after the class map reuses it). One
    writer per `out_dir` (a second one is refused). Areas are true hectares in any CRS, integer pixel counts
    without one (with a `PixelUnitsWarning`). Returns None only when `stop_after_rows` stopped it early.
    Names the model was not trained on are warned about and marked "(untrained)"; an input outside the
    imagery the segmentation head was trained on (`rsneo.heads.domain`) is warned about and noted in the
    class map's metadata and the QGIS project's title; `strict` refuses both before anything is written.
    """
    raster = Path(raster)
    class_names = parse_classes(class_names)
    if not raster.exists():
        raise InputError(f"{raster}: file not found")
    untrained = untrained_classes(system, class_names, strict=strict)  # refused before anything is written
    outside = check_inputs(system, "segmentation", [raster], sensor=sensor, bands=bands, strict=strict)
    out_dir = check_writable(Path(out_dir))
    with output_lock(out_dir), gdal_env():
        return _segment_locked(
            system, raster, class_names, out_dir, plan=plan, sensor=sensor, bands=bands,
            none_threshold=none_threshold, confidence=confidence, show_progress=show_progress,
            stop_after_rows=stop_after_rows, untrained=untrained, notes=(outside,) if outside else (),
        )  # fmt: skip


def _segment_locked(
    system: System,
    raster: Path,
    class_names: list[str],
    out_dir: Path,
    *,
    plan: WindowPlan,
    sensor: str | None,
    bands: list[str] | None,
    none_threshold: float | None,
    confidence: bool,
    show_progress: bool,
    stop_after_rows: int | None,
    untrained: tuple[str, ...] = (),
    notes: tuple[str, ...] = (),
) -> SegmentOutputs | None:
    """`segment_raster` once this process holds `out_dir`."""
    layout = band_layout(raster, sensor, bands, model_band_groups(system.config))
    legend = ClassLegend.from_names([*class_names, NONE_OF_THESE], untrained=untrained, notes=notes)
    stem = raster.stem
    cog = out_dir / f"{stem}_classes.tif"
    signature = run_signature(
        inputs=fingerprint([raster]),
        classes=class_names,
        model=folder_fingerprint(system.folder),
        heads=system.trained_heads,
        plan=plan,
        none=none_threshold,
        conf=confidence,
        sensor=sensor,
        bands=bands,
    )
    predictor = SegmentationPredictor(system, layout, class_names, none_threshold)
    with open_input(raster) as src:
        crs = src.crs
        if crs is None:
            warn_pixel_units(raster)
        result = predict_raster(
            RasterWindows([src]),
            predictor,
            cog,
            legend=legend,
            crs=crs,
            transform=src.transform,
            plan=plan,
            signature=signature,
            confidence=confidence,
            show_progress=show_progress,
            stop_after_rows=stop_after_rows,
            keep_state=True,
        )
    if result is None:
        return None
    unverified = UNVERIFIED_TITLE if notes else ""
    gpkg = out_dir / f"{stem}_classes.gpkg"
    qml = out_dir / f"{stem}_classes.qml"
    qgz = out_dir / f"{stem}.qgz"
    try:
        areas = write_class_polygons(cog, gpkg, legend)
        qgis.write_qml(qml, legend)
        qgis.write_qgz(
            qgz,
            inputs=[raster],
            input_rgb=tuple(b + 1 for b in layout.rgb_bands()),
            class_maps=[(cog, legend)],
            polygons=[(gpkg, legend)],
            crs=crs,
            title=f"rsneo segment {raster.name}" + (" (pixel units)" if crs is None else "") + unverified,
        )
    except InputError:  # a user error: nothing half-written stays (a kill keeps the map for the next run)
        for path in (cog, confidence_path(cog), gpkg, qml, qgz):
            path.unlink(missing_ok=True)
        remove_temporaries([cog, confidence_path(cog), gpkg, qml, qgz])
        raise
    # everything is written: the kept record of the map and any temporaries of a killed run go
    remove_temporaries([cog, confidence_path(cog), gpkg, qml, qgz])
    return SegmentOutputs(
        cog,
        gpkg,
        qml,
        qgz,
        confidence_path(cog) if confidence else None,
        areas,
        "ha" if crs is not None else "px",
        notes,
    )
