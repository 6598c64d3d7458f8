"""`rsneo segment`: open-vocabulary segmentation of a raster into a COG, polygons, QGIS style and project.

raster -> `inputs.open_raster_input` -> `maps.segmentation_map` (band groups -> documents -> backbone ->
features -> segmentation head, per window) -> the engine (`predict_raster`: class map and confidence COGs)
-> polygons, QML and QGIS project around the map.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from affine import Affine

from rsneo.data.frames import model_band_groups
from rsneo.errors import InputError
from rsneo.heads.domain import UNVERIFIED_TITLE, check_inputs
from rsneo.heads.system import System
from rsneo.heads.vocabulary import ClassReadings, read_classes
from rsneo.io import qgis  # module attribute at call time: the resume tests stop a run inside it
from rsneo.io.cog import ClassLegend, check_writable, gdal_env
from rsneo.io.read import warn_pixel_units
from rsneo.io.runstate import fingerprint, folder_fingerprint, output_lock, remove_temporaries
from rsneo.io.sieve import parse_min_area, read_sieve
from rsneo.io.vector import simplify_tolerance, write_class_polygons
from rsneo.predict.inputs import Inputs, layouts_of, open_raster_input
from rsneo.predict.maps.segmentation import segmentation_map
from rsneo.predict.requests import SegmentOutputs, SegmentRequest, parse_classes
from rsneo.predict.resume import confidence_path, run_signature
from rsneo.predict.sliding_window import predict_raster


def segment_raster(system: System, request: SegmentRequest) -> SegmentOutputs:
    """Segment `request.raster` into `request.out`: `<stem>_classes.tif` (COG), `.gpkg`, `.qml`, `<stem>.qgz`.

    Resumes an interrupted run with the same settings (a run killed after the class map reuses it). One
    writer per output folder (a second one is refused). Areas are true hectares in any CRS, integer pixel
    counts without one (with a `PixelUnitsWarning`). Names the model was not trained on (or reads as a
    broader class) are warned about and marked "(untrained)", and every name says what it was read as; an
    input outside the imagery the segmentation head was trained on (`rsneo.heads.domain`) is warned about and
    noted in the class map's metadata and the QGIS project's title; `strict` refuses both before anything is
    written.
    """
    classes = tuple(parse_classes(request.classes))
    request = replace(request, classes=classes, min_area=parse_min_area(request.min_area))
    simplify_tolerance(request.simplify, Affine.identity())  # a bad --simplify fails before any work
    if not request.raster.exists():
        raise InputError(f"{request.raster}: file not found")
    # refused before anything is written
    readings = read_classes(system, list(classes), strict=request.strict)
    outside = check_inputs(
        system, "segmentation", [request.raster], sensor=request.sensor, bands=request.band_list,
        strict=request.strict,
    )  # fmt: skip
    out_dir = check_writable(request.out)
    with output_lock(out_dir), gdal_env():
        return _segment_locked(system, request, readings, (outside,) if outside else ())


def _segment_locked(
    system: System, request: SegmentRequest, readings: ClassReadings, notes: tuple[str, ...]
) -> SegmentOutputs:
    """`segment_raster` once this process holds the output folder."""
    (layout,) = layouts_of([request.raster], request.sensor, request.bands, model_band_groups(system.config))
    cog = request.out / f"{request.raster.stem}_classes.tif"
    signature = run_signature(
        inputs=fingerprint([request.raster]),
        classes=list(request.classes),
        model=folder_fingerprint(system.folder),
        heads=system.trained_heads,
        plan=request.plan,
        none=request.none_threshold,
        conf=request.confidence,
        sensor=request.sensor,
        bands=request.band_list,
    )
    spec = segmentation_map(system, layout, request.classes, request.none_threshold, readings, notes)
    with open_raster_input(request.raster, layout) as inputs:
        if inputs.pixel_units:
            warn_pixel_units(request.raster)
        predict_raster(
            inputs.windows(), spec, cog, crs=inputs.crs, transform=inputs.transform, plan=request.plan,
            signature=signature, confidence=request.confidence, keep_state=True,
            show_progress=request.show_progress, min_area=request.min_area,
        )  # fmt: skip
    return _write_products(inputs, cog, spec.legend, request)


def _write_products(
    inputs: Inputs, cog: Path, legend: ClassLegend, request: SegmentRequest
) -> SegmentOutputs:
    """Polygons, style and QGIS project around the finished class map; a user error leaves nothing
    half-written (a kill keeps the map for the next run)."""
    raster = inputs.rasters[0]
    stem, out_dir = raster.stem, cog.parent
    gpkg, qml, qgz = (
        out_dir / f"{stem}_classes.gpkg",
        out_dir / f"{stem}_classes.qml",
        out_dir / f"{stem}.qgz",
    )
    written = [cog, confidence_path(cog), gpkg, qml, qgz]
    title = f"rsneo segment {raster.name}" + (" (pixel units)" if inputs.crs is None else "")
    try:
        areas = write_class_polygons(cog, gpkg, legend, simplify=request.simplify)
        qgis.write_qml(qml, legend)
        qgis.write_qgz(
            qgz,
            inputs=[raster],
            input_rgb=tuple(b + 1 for b in inputs.layouts[0].rgb_bands()),
            class_maps=[(cog, legend)],
            polygons=[(gpkg, legend)],
            crs=inputs.crs,
            title=title + (UNVERIFIED_TITLE if legend.notes else ""),
        )
    except InputError:
        for path in written:
            path.unlink(missing_ok=True)
        remove_temporaries(written)
        raise
    remove_temporaries(written)  # everything is written: the kept record of the map and temporaries go
    labels = {name: legend.label(i) for i, name in enumerate(legend.names)}
    sieve = read_sieve(cog)
    return SegmentOutputs(
        cog, gpkg, qml, qgz, confidence_path(cog) if request.confidence else None, areas,
        "ha" if inputs.crs is not None else "px", legend.notes, labels, sieve.sentence() if sieve else "",
    )  # fmt: skip
