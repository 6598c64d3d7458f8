"""`rsneo change`: dates of one place -> change map COG, polygons, from-to table, QGIS project, HTML report.

The first raster's grid is the reference; later dates are reprojected onto it (WarpedVRT, read window by
window) when their grid differs (`inputs.open_dates`). The change map (`maps.change_map`) compares the first
and the last date, and label-as-text segmentation on those two dates gives from-to classes; the files around
it are every change-kind product's (`change_outputs`).
"""

from __future__ import annotations

from dataclasses import replace

from affine import Affine

from rsneo.data.frames import model_band_groups
from rsneo.errors import InputError
from rsneo.heads.domain import check_inputs
from rsneo.heads.finetuned import is_finetuned
from rsneo.heads.system import System
from rsneo.heads.vocabulary import ClassReadings, read_classes
from rsneo.io.cog import check_writable, gdal_env
from rsneo.io.runstate import fingerprint, folder_fingerprint, output_lock
from rsneo.io.sieve import parse_min_area
from rsneo.io.vector import simplify_tolerance
from rsneo.predict.change_classes import MAX_FROM_TO_CLASSES
from rsneo.predict.change_outputs import ChangeWording, change_files, write_change_products
from rsneo.predict.inputs import layouts_of, open_dates
from rsneo.predict.maps.change import change_map
from rsneo.predict.requests import ChangeOutputs, ChangeRequest, check_dates, parse_classes
from rsneo.predict.resume import run_signature
from rsneo.predict.sliding_window import MapSpec, predict_raster


def detect_change(system: System, request: ChangeRequest) -> ChangeOutputs:
    """Compare the first and last of `request.rasters` (dates of one place); write every output to
    `request.out`.

    One writer per output folder; an interrupted run resumes (a run killed after the change map reuses it).
    Areas are true hectares in any CRS, integer pixel counts for dates without georeference. Dates outside
    the imagery the change head (and, with classes, the segmentation head) was trained on are warned about
    and noted in the report; `strict` refuses them, and untrained class names, before anything is written.
    """
    check_dates(request.rasters)
    classes = None
    if request.classes is not None:
        classes = tuple(parse_classes(request.classes))
        if len(classes) + 1 > MAX_FROM_TO_CLASSES:
            raise InputError(
                f"--classes: at most {MAX_FROM_TO_CLASSES - 1} classes for from-to change, got {len(classes)}"
            )
    request = replace(request, classes=classes, min_area=parse_min_area(request.min_area))
    simplify_tolerance(request.simplify, Affine.identity())  # a bad --simplify fails before any work
    readings = read_classes(system, list(classes), strict=request.strict) if classes else ClassReadings()
    heads = ("change", "segmentation") if classes else ("change",)
    notes = [
        check_inputs(system, h, request.rasters, sensor=request.sensor, bands=request.band_list,
                     strict=request.strict)
        for h in heads
    ]  # fmt: skip
    head_votes = not notes[0]  # the change head's own imagery: else its vote is left out
    out_dir = check_writable(request.out)
    with output_lock(out_dir), gdal_env():
        return _detect_change_locked(system, request, readings, tuple(n for n in notes if n), head_votes)


def _detect_change_locked(
    system: System, request: ChangeRequest, readings: ClassReadings, notes: tuple[str, ...], votes: bool
) -> ChangeOutputs:
    """`detect_change` once this process holds the output folder."""
    layouts = layouts_of(request.rasters, request.sensor, request.bands, model_band_groups(system.config))
    files = change_files(request.out)
    signature = run_signature(
        inputs=fingerprint(request.rasters),
        sensor=request.sensor,
        bands=request.band_list,
        classes=request.classes,
        model=folder_fingerprint(system.folder),
        heads=system.trained_heads,
        plan=request.plan,
        head_votes=votes,
    )
    with open_dates(request.rasters, layouts) as inputs:
        spec = change_map(system, inputs, request.classes, votes, readings.untrained)
        read_as = tuple(readings.read_as.items())  # of the typed classes: said in the report and tags
        spec = replace(spec, legend=replace(spec.legend, notes=notes, read_as=read_as))
        predict_raster(
            inputs.windows(), spec, files["cog"], crs=inputs.crs, transform=inputs.transform,
            plan=request.plan, signature=signature, keep_state=True, show_progress=request.show_progress,
            min_area=request.min_area,
        )  # fmt: skip
        wording = ChangeWording(
            "Change",
            f"the model in {system.folder}" if system.folder else "an untrained model",
            _how_mapped(system, spec),
        )
        return write_change_products(
            inputs, files, spec.legend, wording, system.config.token_size, request.simplify
        )


def _how_mapped(system: System, spec: MapSpec) -> str | None:
    """The report's sentence on how the map was made (None: nothing to add)."""
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
    if not spec.predict.votes:
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
