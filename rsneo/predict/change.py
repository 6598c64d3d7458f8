"""`rsneo change`: dates of one place -> change map COG, polygons, from-to table, QGIS project and HTML
report.

The first raster's grid is the reference; later dates are reprojected onto it (WarpedVRT, read window by
window) when their grid differs. All dates of a window form one scene document (`scene` mask), the change head
compares the first and the last date, and label-as-text segmentation on those two dates gives from-to classes.
"""

from __future__ import annotations

import copy
import csv
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from rasterio.enums import Resampling

from rsneo.atomic import atomic_path
from rsneo.baselines import change_vector_magnitude, otsu_threshold
from rsneo.data.frames import BandLayout, band_layout, model_band_groups
from rsneo.errors import InputError
from rsneo.heads.change import CHANGE_NAMES, MAGNITUDE_SIGMA, ChangeHead, blur, magnitude_excess
from rsneo.heads.domain import UNVERIFIED_TITLE, check_inputs
from rsneo.heads.fewshot import class_vectors
from rsneo.heads.finetuned import is_finetuned
from rsneo.heads.segmentation import image_features
from rsneo.heads.system import System
from rsneo.heads.vocabulary import untrained_classes
from rsneo.io.areas import format_area
from rsneo.io.cog import ClassLegend, check_writable, gdal_env
from rsneo.io.dataset import data_bands, open_raster
from rsneo.io.qgis import write_qgz, write_qml
from rsneo.io.report import ChangeReport, ReportImage, change_summary, png_data_uri, stretch_rgb, write_report
from rsneo.io.runstate import fingerprint, folder_fingerprint, output_lock, remove_temporaries
from rsneo.io.vector import class_areas, write_class_polygons
from rsneo.io.windows import aligned_datasets, overview_size, read_overview
from rsneo.predict.buildings import BUILDING_NAMES, building_predictor
from rsneo.predict.segment import NONE_OF_THESE, parse_classes, window_inputs
from rsneo.predict.sliding_window import (
    RasterWindows,
    WindowPlan,
    confidence_path,
    predict_raster,
    run_signature,
)

MAX_FROM_TO_CLASSES = (
    15  # (classes + "none of these")^2 + 1 class values must fit in uint8 below the nodata value
)


def layout_bands(layouts: list[BandLayout]) -> tuple[list[str], list[tuple[str, ...]]]:
    """Each date's sensor and band names, as `aligned_datasets` checks them."""
    return [lay.sensor for lay in layouts], [lay.band_names for lay in layouts]


def change_legend(class_names: list[str] | None, untrained: tuple[str, ...] = ()) -> ClassLegend:
    """ "no change" + "change", or "no change" + one "A → B" class per pair of (classes + none of these).

    Pairs involving a class in `untrained` are marked untrained in the legend."""
    if not class_names:
        return ClassLegend.from_names(list(CHANGE_NAMES))
    names = [*class_names, NONE_OF_THESE]
    pairs = [f"{a} → {b}" for a in names for b in names]
    marked = tuple(f"{a} → {b}" for a in names for b in names if a in untrained or b in untrained)
    legend = ClassLegend.from_names([CHANGE_NAMES[0], *pairs], untrained=marked)
    return legend


@torch.inference_mode()
def calibrated_change_head(
    system: System, layouts: list[BandLayout], views: list[tuple[np.ndarray, np.ndarray]]
) -> ChangeHead:
    """A copy of an untrained change head whose threshold and scale fit this scene's feature distances.

    An untrained head is a feature distance whose typical size depends on the backbone; its threshold is set
    by Otsu's method on the distances of a reduced view of the whole scene, and its scale so that the 5th and
    95th percentiles sit about 5 logits from it.
    """
    head = copy.deepcopy(system.change)
    valid = np.logical_and.reduce([v for _, v in views])  # (h, w)
    pixels = np.stack([p for p, _ in views])[None]  # (1, dates, bands, h, w)
    inputs = window_inputs(layouts, pixels, valid[None], system.config, "scene").to(system.device)
    features = image_features(system.model, inputs, head.config.early_layer, frames=len(views))
    a, b = head.embeddings(features, 0), head.embeddings(features, len(views) - 1)
    distance = (1.0 - (a * b).sum(1))[0].float().cpu().numpy()[valid]  # (valid pixels,)
    if distance.size < 2:
        return head
    threshold = otsu_threshold(distance)
    low, high = np.percentile(distance, [5, 95])
    head.threshold.fill_(threshold)
    head.log_scale.fill_(float(np.log(5.0 / max(high - threshold, threshold - low, 1e-6))))
    return head


@dataclass
class SceneMagnitude:
    """What the change head's magnitude term needs of the whole scene: each date's per-band mean and std and
    the Otsu cut of the change-vector magnitude, measured once on a decimated read (nearest: the pixels'
    own distribution, unlike an averaged overview), so that every window is judged on the scene's terms."""

    mean: np.ndarray  # (2, bands, 1, 1): first and last date
    std: np.ndarray  # (2, bands, 1, 1)
    cut: float

    @classmethod
    def measure(cls, first, last, max_side: int = 1024) -> SceneMagnitude:
        step = -(-max(first.width, first.height) // max_side)  # whole pixels: every `step`-th row and column
        shape = (-(-first.height // step), -(-first.width // step))
        reads = []
        for ds in (first, last):
            bands = data_bands(ds)
            pixels = ds.read(bands, out_shape=(len(bands), *shape), resampling=Resampling.nearest)
            reads.append((pixels.astype(np.float64), ds.dataset_mask(out_shape=shape) > 0))
        valid = reads[0][1] & reads[1][1]
        if valid.sum() < 2:
            valid = np.ones_like(valid)
        values = [p[:, valid] for p, _ in reads]  # (bands, n) each
        mean = np.stack([v.mean(1) for v in values])[..., None, None]
        std = np.stack([v.std(1) for v in values])[..., None, None]
        std = np.where(std > 0, std, 1.0)
        magnitude = change_vector_magnitude((values[0] - mean[0, :, :, 0]) / std[0, :, :, 0],
                                            (values[1] - mean[1, :, :, 0]) / std[1, :, :, 0])  # fmt: skip
        field = np.zeros(shape)
        field[valid] = magnitude
        mask = torch.from_numpy(valid)[None, None]
        field = blur(torch.from_numpy(field)[None, None], MAGNITUDE_SIGMA / step, mask)[0, 0].numpy()
        return cls(mean, std, otsu_threshold(field[valid]))

    def excess(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray | None = None) -> torch.Tensor:
        """(B, bands, H, W) raw pixels of both dates (and their (B, H, W) valid mask) -> (B, 1, H, W)
        magnitude excess over the scene cut, blurred over the valid pixels."""
        a = (before - self.mean[0]) / self.std[0]
        b = (after - self.mean[1]) / self.std[1]
        magnitude = torch.from_numpy(np.sqrt(((b - a) ** 2).sum(1, keepdims=True)).astype(np.float32))
        mask = None if valid is None else torch.from_numpy(np.asarray(valid, bool))[:, None]
        return magnitude_excess(blur(magnitude, valid=mask), self.cut)


class ChangePredictor:
    """`predict_fn` for change: (B, dates, bands, S, S) -> [P(no change), P(change), seg first, seg last]."""

    def __init__(
        self,
        system: System,
        layouts: list[BandLayout],
        class_names: list[str] | None,
        head: ChangeHead,
        magnitude: SceneMagnitude | None = None,
        votes: bool = True,
    ) -> None:
        self.system, self.layouts, self.head, self.magnitude = system, layouts, head, magnitude
        self.votes = votes or magnitude is None  # without the magnitude the head is all there is
        self.class_vectors = None
        if class_names:
            with torch.inference_mode():
                self.class_vectors = class_vectors(system, class_names)  # learnt classes first

    @torch.inference_mode()
    def __call__(self, pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
        system, dates = self.system, pixels.shape[1]
        features = None
        if self.votes or self.class_vectors is not None:
            inputs = window_inputs(self.layouts, pixels, valid, system.config, "scene").to(system.device)
            features = image_features(system.model, inputs, self.head.config.early_layer, frames=dates)
        if self.magnitude is not None:
            excess = self.magnitude.excess(pixels[:, 0], pixels[:, -1], valid).to(system.device)
        if not self.votes:  # outside the head's training imagery: the magnitude alone
            logits = self.head.magnitude_alone(excess)
        else:
            logits = self.head(features, 0, dates - 1)  # (B, 2, S, S)
            if self.magnitude is not None:
                logits = self.head.combine(logits.float(), excess)
        out = [logits.softmax(1)]
        if self.class_vectors is not None:
            seg = system.segmentation
            if seg.config.early_layer != self.head.config.early_layer:
                features = image_features(system.model, inputs, seg.config.early_layer, frames=dates)
            for frame in (0, dates - 1):
                out.append(seg.probabilities(seg(features, self.class_vectors, frame)))  # (B, K + 1, S, S)
        return torch.cat(out, 1).float().cpu().numpy()


def change_predictor(
    system: System,
    layouts: list[BandLayout],
    datasets: list,
    class_names: list[str] | None = None,
    head_votes: bool = True,
) -> ChangePredictor:
    """The change map's predictor for these aligned dates: the change head (calibrated on this scene when the
    model folder did not train it) and, when the head combines it, the radiometric change magnitude measured
    on the whole scene; `head_votes` False (dates outside the head's training imagery) leaves the head's vote
    out when there is a magnitude to map with. `rsneo change` and `rsneo ask` both map change with it, so an
    answer's changed share and the change map of the same dates come from one definition."""
    head = system.change
    if is_finetuned(head):  # fine-tuned on labelled pairs (`rsneo finetune`): its map alone, no magnitude
        return ChangePredictor(system, layouts, class_names, head)
    if "change" not in system.trained_heads:
        ref = datasets[0]
        shape = overview_size(ref.width, ref.height, 512, system.config.token_size)
        views = [read_overview(ds, shape) for ds in datasets]
        head = calibrated_change_head(system, layouts, views)
    magnitude = SceneMagnitude.measure(datasets[0], datasets[-1]) if head.uses_magnitude else None
    return ChangePredictor(system, layouts, class_names, head, magnitude, votes=head_votes)


def head_calibration(head) -> tuple[float, ...]:
    """The numbers this scene set in the change head (the run's signature records them): the threshold and
    scale of the bundled kind; a fine-tuned head's calibration is its own (heads.json)."""
    if is_finetuned(head):
        return (head.config.bias,)
    return (float(head.threshold.detach()), float(head.log_scale.detach()))


def changed_and_compared(areas: dict[str, float]) -> tuple[float, float]:
    """Changed and compared area from a change map's `class_areas` (which it empties of those two keys):
    compared = the valid pixels, changed = compared minus "no change" (every change class together)."""
    compared = areas.pop("")
    return compared - areas.pop(CHANGE_NAMES[0]), compared


def from_to_classifier(n_classes: int | None):
    """Blended channels -> class values: 0 no change; 1 change, or 1 + from * n + to with from-to classes."""

    def classify(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        changed = probs[1] >= 0.5
        confidence = np.where(changed, probs[1], probs[0])
        if not n_classes:
            return changed.astype(np.uint8), confidence
        before = probs[2 : 2 + n_classes].argmax(0)
        after = probs[2 + n_classes : 2 + 2 * n_classes].argmax(0)
        return np.where(changed, 1 + before * n_classes + after, 0).astype(np.uint8), confidence

    return classify


@dataclass
class ChangeOutputs:
    cog: Path
    gpkg: Path
    qml: Path
    qgz: Path
    table: Path
    report: Path
    changed_area: float
    compared_area: float
    area_unit: str
    summary: str
    notes: tuple[str, ...] = ()  # caveats also written into the report (input outside the training data)


def detect_change(
    system: System,
    rasters: list[Path],
    out_dir: Path,
    *,
    class_names: list[str] | None = None,
    plan: WindowPlan = WindowPlan(),
    sensor: str | None = None,
    bands: list[str] | None = None,
    show_progress: bool = False,
    strict: bool = False,
    of: str | None = None,
    pixel_size: float | None = None,
) -> ChangeOutputs:
    """Compare the first and last of `rasters` (dates of one place); write every output to `out_dir`.

    `of="buildings"` maps new buildings instead of any change (`rsneo.predict.buildings`; `pixel_size` in
    metres for images without georeference). One writer per `out_dir`; an interrupted run resumes (a run
    killed after the change map reuses it). Areas are true hectares in any CRS, integer pixel counts for
    dates without georeference. Dates outside the imagery the change head (and, with classes, the
    segmentation head) was trained on are warned about and noted in the report; `strict` refuses them, and
    untrained class names, before anything is written. The building map does not use the model: not checked.
    """
    rasters = [Path(r) for r in rasters]
    if len(rasters) < 2:
        raise InputError(f"change: expected two or more rasters (dates of one place), got {len(rasters)}")
    for raster in rasters:
        if not raster.exists():
            raise InputError(f"{raster}: file not found")
    if class_names is not None:
        class_names = parse_classes(class_names)
        if len(class_names) + 1 > MAX_FROM_TO_CLASSES:
            raise InputError(
                f"--classes: at most {MAX_FROM_TO_CLASSES - 1} classes for from-to change, "
                f"got {len(class_names)}"
            )
    if of is not None:
        of = of.strip().lower()
        if of not in ("building", "buildings"):
            raise InputError(f"--of: expected buildings (the one kind of change mapped apart), got {of!r}")
        if class_names:
            raise InputError("--of buildings maps new buildings; it cannot be combined with --classes")
        of = "buildings"
    untrained = untrained_classes(system, class_names, strict=strict) if class_names else ()
    heads = () if of else ("change", "segmentation") if class_names else ("change",)  # buildings: no model
    notes = [check_inputs(system, h, rasters, sensor=sensor, bands=bands, strict=strict) for h in heads]
    head_votes = not (heads and notes[0])  # the change head's own imagery: else its vote is left out
    out_dir = check_writable(Path(out_dir))
    with output_lock(out_dir), gdal_env():
        return _detect_change_locked(
            system, rasters, out_dir, class_names=class_names, plan=plan, sensor=sensor, bands=bands,
            show_progress=show_progress, untrained=untrained, of=of, pixel_size=pixel_size,
            notes=tuple(n for n in notes if n), head_votes=head_votes,
        )  # fmt: skip


def _detect_change_locked(
    system: System,
    rasters: list[Path],
    out_dir: Path,
    *,
    class_names: list[str] | None,
    plan: WindowPlan,
    sensor: str | None,
    bands: list[str] | None,
    show_progress: bool,
    untrained: tuple[str, ...] = (),
    of: str | None = None,
    pixel_size: float | None = None,
    notes: tuple[str, ...] = (),
    head_votes: bool = True,
) -> ChangeOutputs:
    """`detect_change` once this process holds `out_dir`."""
    layouts = [band_layout(r, sensor, bands, model_band_groups(system.config)) for r in rasters]
    legend = ClassLegend.from_names(list(BUILDING_NAMES)) if of else change_legend(class_names, untrained)
    legend = replace(legend, notes=notes)
    n_classes = len(class_names) + 1 if class_names else None
    cog, gpkg = out_dir / "change.tif", out_dir / "change.gpkg"
    qml, qgz = out_dir / "change.qml", out_dir / "change.qgz"
    table, report = out_dir / "change_table.csv", out_dir / "change_report.html"
    outputs = [cog, confidence_path(cog), gpkg, qml, qgz, table, report]
    signature = run_signature(
        inputs=fingerprint(rasters),
        sensor=sensor,
        bands=bands,
        classes=class_names,
        model=folder_fingerprint(system.folder),
        heads=system.trained_heads,
        plan=plan,
        of=of,
        pixel_size=pixel_size,
        head_votes=head_votes,
    )
    with aligned_datasets(rasters, *layout_bands(layouts)) as (datasets, crs, transform, pixel_units):
        if of:
            predictor = building_predictor(layouts, rasters, datasets, pixel_size)
            calibration = (predictor.scene.building_cut, predictor.scene.rise_cut)
        else:
            predictor = change_predictor(system, layouts, datasets, class_names, head_votes)
            calibration = head_calibration(predictor.head)
        predict_raster(
            RasterWindows(datasets, stack=True),
            predictor,
            cog,
            legend=legend,
            crs=crs,
            transform=transform,
            plan=plan,
            signature=run_signature(caller=signature, calibration=calibration),
            show_progress=show_progress,
            classify=from_to_classifier(n_classes),
            keep_state=True,
        )
        unverified = UNVERIFIED_TITLE if notes else ""
        try:
            unit = "px" if pixel_units else "ha"
            write_class_polygons(cog, gpkg, legend, skip=(0,))
            write_qml(qml, legend)
            write_qgz(
                qgz,
                inputs=rasters[::-1],
                input_rgb=tuple(b + 1 for b in layouts[0].rgb_bands()),
                class_maps=[(cog, legend)],
                polygons=[(gpkg, legend)],
                crs=crs,
                title="rsneo change" + (" (pixel units)" if pixel_units else "") + unverified,
            )
            areas = class_areas(cog, legend)
            changed, compared = changed_and_compared(areas)
            rows = [(name, area) for name, area in areas.items() if area > 0]
            _write_table(table, rows, compared, unit)
            summary = _write_change_report(
                report,
                system,
                rasters,
                layouts,
                datasets,
                cog,
                legend,
                rows,
                changed,
                compared,
                unit,
                pixel_units,
                of,
                _how_mapped(system, of, predictor),
            )
        except InputError:  # a user error: nothing half-written stays (a kill keeps the map for the next run)
            for path in outputs:
                path.unlink(missing_ok=True)
            remove_temporaries(outputs)
            raise
    remove_temporaries(outputs)  # the kept record of the map and temporaries of a killed run
    return ChangeOutputs(cog, gpkg, qml, qgz, table, report, changed, compared, unit, summary, notes)


def _how_mapped(system: System, of: str | None, predictor) -> str | None:
    """The report's sentence on how the map was made (None: nothing to add)."""
    if of:
        return (
            "New buildings are mapped by the morphological building index of each date (bright, roof-sized "
            "shapes) where it rose clearly, both cuts by Otsu's method on this pair; the model is not used "
            "for this map (it never saw buildings). Demolished buildings are not mapped."
        )
    if is_finetuned(system.change):
        return (
            "The change map is the change head fine-tuned on labelled pairs (rsneo finetune; finetune.json "
            "in the model folder says on which and its validation scores), cut where its validation F1 was "
            "best."
        )
    if "change" not in system.trained_heads:
        return (
            "The change head was not trained in this model folder: the map is a feature distance between the "
            "dates, thresholded by Otsu's method on this pair."
        )
    if not predictor.votes:
        return (
            "The change head was not trained on imagery like this (above), so its vote is left out: the map "
            "is the radiometric change magnitude of the two dates (bands standardised, blurred by one "
            "pixel), cut by Otsu's method on this pair, i.e. change-vector analysis."
        )
    if system.change.uses_magnitude:
        return (
            "The change map combines the change head's vote with the radiometric change magnitude of the two "
            "dates (relative to its Otsu cut on this pair), weights fit on training pairs (model card)."
        )
    return None


WITHIN_CLASS = "within class"
BETWEEN_CLASSES = "between classes"


def change_kind(name: str) -> str:
    """How a change-map class counts: "between classes" (from != to), "within class" (the change score alone
    says change, the class stays: a new roof, a harvested field) or "change" (no classes asked)."""
    before, arrow, after = name.partition(" → ")
    if not arrow:
        return CHANGE_NAMES[1]
    return WITHIN_CLASS if before == after else BETWEEN_CLASSES


def ordered_rows(rows: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Between-class rows first, then within-class ones, each by decreasing area: the from-to table never
    mixes "vegetation → vegetation" into the class transitions."""
    order = {BETWEEN_CLASSES: 0, CHANGE_NAMES[1]: 0, WITHIN_CLASS: 1}
    return sorted(rows, key=lambda row: (order[change_kind(row[0])], -row[1]))


def _write_table(path: Path, rows: list[tuple[str, float]], compared: float, unit: str) -> None:
    with atomic_path(path, "partial.csv") as partial, partial.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["from", "to", f"area_{unit}", "percent_of_compared", "kind"])
        for name, area in ordered_rows(rows):
            before, _, after = name.partition(" → ")
            value = f"{int(area)}" if unit == "px" else f"{area:.4f}"
            writer.writerow(
                [before, after, value, f"{100 * area / max(compared, 1e-12):.3f}", change_kind(name)]
            )


def _write_change_report(
    path: Path,
    system: System,
    rasters: list[Path],
    layouts: list[BandLayout],
    datasets: list,
    cog: Path,
    legend: ClassLegend,
    rows: list[tuple[str, float]],
    changed: float,
    compared: float,
    unit: str,
    pixel_units: bool,
    of: str | None = None,
    how_mapped: str | None = None,
) -> str:
    """Pictures of the first and last date and of the change map, measured numbers, the summary of them."""
    ref = datasets[0]
    shape = overview_size(ref.width, ref.height, 512, system.config.token_size)
    views = [read_overview(ds, shape) for ds in datasets]
    # file names, with their folder when the dates share one name (LEVIR-CD's A/x.png and B/x.png)
    plain = [r.name for r in rasters]
    names = (
        plain if len(set(plain)) == len(plain) else [f"{r.parent.name}/{r.name}" for r in rasters]
    )  # [(pixels (bands, h, w), valid (h, w))]
    images = []
    for index in (0, len(rasters) - 1):
        pixels, valid = views[index]
        label = "before" if index == 0 else "after"
        date = f" ({layouts[index].date})" if layouts[index].date else ""
        rgb = stretch_rgb(pixels[layouts[index].rgb_bands()], valid)
        images.append(ReportImage(f"{label}: {names[index]}{date}", png_data_uri(rgb)))
    with open_raster(cog) as src:
        classes = src.read(1, out_shape=shape, resampling=Resampling.nearest)  # (h, w)
    lut = np.zeros((256, 3), np.uint8)
    for i, colour in enumerate(legend.colors):
        lut[i] = colour
    lut[0] = (40, 40, 40)
    images.append(
        ReportImage("change map (dark grey: no change, black: no data)", png_data_uri(lut[classes]))
    )

    dates = [lay.date for lay in layouts]
    summary = change_summary(changed, compared, unit, dates, rows, BUILDING_NAMES[1] + "s" if of else None)
    share = 100 * changed / max(compared, 1e-12)
    measured = [
        f"Compared area: {format_area(compared, unit)} (valid on every date).",
        f"Changed area: {format_area(changed, unit)}, {share:.2f} % of the compared area.",
        f"Dates: {', '.join((lay.date or n) for lay, n in zip(layouts, names, strict=True))}; "
        f"the change map compares the first and the last.",
    ]
    within = sum(area for name, area in rows if change_kind(name) == WITHIN_CLASS)
    if any(change_kind(name) != CHANGE_NAMES[1] for name, _ in rows):
        measured.append(
            f"Of the changed area, {format_area(changed - within, unit)} changed class and "
            f"{format_area(within, unit)} changed within one class (the change score alone; listed "
            "separately in the table, not as a class transition)."
        )
    measured += [f"{name}: {format_area(area, unit)}" for name, area in ordered_rows(rows)[:10]]
    notes = [f"Outside the model's training data: {note}." for note in legend.notes]
    if legend.untrained:
        notes.append(
            "Classes the model was not trained on are marked (untrained): their from-to labels are arbitrary."
        )
    if pixel_units:
        notes.append("The inputs have no georeference: areas are in pixels, not hectares.")
    if how_mapped:
        notes.append(how_mapped)
    header = ["from", "to", "area (px)" if unit == "px" else "area (ha)", "% of compared", "kind"]
    table_rows = []
    for name, area in ordered_rows(rows):
        before, _, after = name.partition(" → ")
        share = f"{100 * area / max(compared, 1e-12):.2f}"
        table_rows.append([before, after, format_area(area, unit).split()[0], share, change_kind(name)])
    report = ChangeReport(
        title=f"{'New buildings' if of else 'Change'} between {names[0]} and {names[-1]}",
        inputs=[str(r) for r in rasters],
        model=(
            "the morphological building index (no model)"
            if of
            else f"the model in {system.folder}"
            if system.folder
            else "an untrained model"
        ),
        legend=[(legend.label(i), legend.hex(i)) for i in (legend.names.index(name) for name, _ in rows)],
        images=images,
        measured=measured,
        generated=summary,
        table_header=header,
        table_rows=table_rows,
        notes=notes,
    )
    write_report(path, report)
    return summary
