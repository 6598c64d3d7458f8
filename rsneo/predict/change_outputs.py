"""What a change-kind product writes around its map: polygons, QML style, QGIS project, the from-to table
(CSV) and the HTML report with pictures, measured numbers and the summary written from them.

`rsneo change` and `rsneo change --of buildings` write the same files; only the words differ
(`ChangeWording`: the title, what made the map, how it was mapped).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.enums import Resampling

from rsneo.atomic import atomic_path
from rsneo.errors import InputError
from rsneo.heads.change import CHANGE_NAMES
from rsneo.heads.domain import UNVERIFIED_TITLE
from rsneo.io.areas import format_area
from rsneo.io.cog import ClassLegend
from rsneo.io.dataset import open_raster
from rsneo.io.qgis import write_qgz, write_qml
from rsneo.io.report import ChangeReport, ReportImage, change_summary, png_data_uri, stretch_rgb, write_report
from rsneo.io.runstate import remove_temporaries
from rsneo.io.sieve import read_sieve
from rsneo.io.vector import class_areas, write_class_polygons
from rsneo.io.windows import overview_size, read_overview
from rsneo.predict.change_classes import WITHIN_CLASS, change_kind, changed_and_compared, ordered_rows
from rsneo.predict.inputs import Inputs
from rsneo.predict.requests import ChangeOutputs
from rsneo.predict.resume import confidence_path


@dataclass(frozen=True)
class ChangeWording:
    """How a change-kind product speaks of its map in the report."""

    title: str  # "Change", "New buildings": the report's title before "between A and B"
    made_by: str  # what made the map (the model folder, or the method when no model is used)
    how_mapped: str | None = None  # a note on how the map was made (None: nothing to add)
    subject: str | None = None  # what changed, in the summary ("new buildings"); None: change in general


@dataclass
class ChangeTotals:
    """The measured numbers of a change map: area per class present, changed and compared area."""

    rows: list[tuple[str, float]]  # (class, area) of every class with some area, "no change" left out
    changed: float
    compared: float  # valid on every date
    unit: str  # "ha" or "px"

    @classmethod
    def of_map(cls, cog: Path, legend: ClassLegend, pixel_units: bool) -> ChangeTotals:
        areas = class_areas(cog, legend)
        changed, compared = changed_and_compared(areas)
        rows = [(name, area) for name, area in areas.items() if area > 0]
        return cls(rows, changed, compared, "px" if pixel_units else "ha")


def change_files(out_dir: Path) -> dict[str, Path]:
    """Where a change-kind product writes: the map and everything around it."""
    names = {"cog": "change.tif", "gpkg": "change.gpkg", "qml": "change.qml", "qgz": "change.qgz",
             "table": "change_table.csv", "report": "change_report.html"}  # fmt: skip
    return {key: out_dir / name for key, name in names.items()}


def write_change_products(
    inputs: Inputs,
    files: dict[str, Path],
    legend: ClassLegend,
    wording: ChangeWording,
    token_size: int,
    simplify: str | float | None = None,
) -> ChangeOutputs:
    """Everything around the finished map `files["cog"]` (polygon outlines simplified by `simplify`, see
    `write_class_polygons`); a user error leaves nothing half-written (a kill keeps the map for the next
    run)."""
    cog = files["cog"]
    outputs = [cog, confidence_path(cog), *(files[k] for k in ("gpkg", "qml", "qgz", "table", "report"))]
    unverified = UNVERIFIED_TITLE if legend.notes else ""
    try:
        write_class_polygons(cog, files["gpkg"], legend, skip=(0,), simplify=simplify)
        write_qml(files["qml"], legend)
        write_qgz(
            files["qgz"],
            inputs=inputs.rasters[::-1],
            input_rgb=tuple(b + 1 for b in inputs.layouts[0].rgb_bands()),
            class_maps=[(cog, legend)],
            polygons=[(files["gpkg"], legend)],
            crs=inputs.crs,
            title="rsneo change" + (" (pixel units)" if inputs.pixel_units else "") + unverified,
        )
        totals = ChangeTotals.of_map(cog, legend, inputs.pixel_units)
        write_table(files["table"], totals)
        summary = write_change_report(files["report"], inputs, cog, legend, totals, wording, token_size)
    except InputError:
        for path in outputs:
            path.unlink(missing_ok=True)
        remove_temporaries(outputs)
        raise
    remove_temporaries(outputs)  # the kept record of the map and temporaries of a killed run
    sieve = read_sieve(cog)
    return ChangeOutputs(
        cog, files["gpkg"], files["qml"], files["qgz"], files["table"], files["report"], totals.changed,
        totals.compared, totals.unit, summary, legend.notes, sieve.sentence() if sieve else "",
    )  # fmt: skip


def write_table(path: Path, totals: ChangeTotals) -> None:
    """The from-to table: one row per class present, between-class changes first."""
    with atomic_path(path, "partial.csv") as partial, partial.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["from", "to", f"area_{totals.unit}", "percent_of_compared", "kind"])
        for name, area in ordered_rows(totals.rows):
            before, _, after = name.partition(" → ")
            value = f"{int(area)}" if totals.unit == "px" else f"{area:.4f}"
            share = f"{100 * area / max(totals.compared, 1e-12):.3f}"
            writer.writerow([before, after, value, share, change_kind(name)])


def write_change_report(
    path: Path,
    inputs: Inputs,
    cog: Path,
    legend: ClassLegend,
    totals: ChangeTotals,
    wording: ChangeWording,
    token_size: int,
) -> str:
    """Pictures of the first and last date and of the change map, measured numbers, the summary of them;
    returns the summary."""
    names = _input_names(inputs.rasters)
    dates = [lay.date for lay in inputs.layouts]
    subject = wording.subject
    summary = change_summary(totals.changed, totals.compared, totals.unit, dates, totals.rows, subject)
    header = ["from", "to", "area (px)" if totals.unit == "px" else "area (ha)", "% of compared", "kind"]
    report = ChangeReport(
        title=f"{wording.title} between {names[0]} and {names[-1]}",
        inputs=[str(r) for r in inputs.rasters],
        model=wording.made_by,
        legend=[(legend.label(i), legend.hex(i)) for i in (legend.names.index(n) for n, _ in totals.rows)],
        images=_report_images(inputs, names, cog, legend, token_size),
        measured=_measured(totals, inputs, names),
        generated=summary,
        table_header=header,
        table_rows=_table_rows(totals),
        notes=_notes(legend, inputs.pixel_units, wording.how_mapped),
    )
    write_report(path, report)
    return summary


def _input_names(rasters: list[Path]) -> list[str]:
    """File names, with their folder when the dates share one name (LEVIR-CD's A/x.png and B/x.png)."""
    plain = [r.name for r in rasters]
    return plain if len(set(plain)) == len(plain) else [f"{r.parent.name}/{r.name}" for r in rasters]


def _report_images(
    inputs: Inputs, names: list[str], cog: Path, legend: ClassLegend, token_size: int
) -> list[ReportImage]:
    """The first and the last date (stretched RGB) and the change map, all on one reduced grid."""
    ref = inputs.datasets[0]
    shape = overview_size(ref.width, ref.height, 512, token_size)
    views = [read_overview(ds, shape) for ds in inputs.datasets]  # [(pixels (bands, h, w), valid (h, w))]
    images = []
    for index in (0, len(inputs.rasters) - 1):
        pixels, valid = views[index]
        layout = inputs.layouts[index]
        label = "before" if index == 0 else "after"
        date = f" ({layout.date})" if layout.date else ""
        rgb = stretch_rgb(pixels[layout.rgb_bands()], valid)
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
    return images


def _measured(totals: ChangeTotals, inputs: Inputs, names: list[str]) -> list[str]:
    """The report's sentences of measured numbers: areas, dates, the largest classes."""
    unit, changed, compared, rows = totals.unit, totals.changed, totals.compared, totals.rows
    share = 100 * changed / max(compared, 1e-12)
    measured = [
        f"Compared area: {format_area(compared, unit)} (valid on every date).",
        f"Changed area: {format_area(changed, unit)}, {share:.2f} % of the compared area.",
        f"Dates: {', '.join((lay.date or n) for lay, n in zip(inputs.layouts, names, strict=True))}; "
        f"the change map compares the first and the last.",
    ]
    within = sum(area for name, area in rows if change_kind(name) == WITHIN_CLASS)
    if any(change_kind(name) != CHANGE_NAMES[1] for name, _ in rows):
        measured.append(
            f"Of the changed area, {format_area(changed - within, unit)} changed class and "
            f"{format_area(within, unit)} changed within one class (the change score alone; listed "
            "separately in the table, not as a class transition)."
        )
    return measured + [f"{name}: {format_area(area, unit)}" for name, area in ordered_rows(rows)[:10]]


def _notes(legend: ClassLegend, pixel_units: bool, how_mapped: str | None) -> list[str]:
    notes = [f"Outside the model's training data: {note}." for note in legend.notes]
    notes += [f'"{name}" is {reading} by the model.' for name, reading in legend.read_as]
    if legend.untrained:
        notes.append(
            "Classes the model was not trained on are marked (untrained): their from-to labels are arbitrary."
        )
    if pixel_units:
        notes.append("The inputs have no georeference: areas are in pixels, not hectares.")
    if how_mapped:
        notes.append(how_mapped)
    return notes


def _table_rows(totals: ChangeTotals) -> list[list[str]]:
    out = []
    for name, area in ordered_rows(totals.rows):
        before, _, after = name.partition(" → ")
        share = f"{100 * area / max(totals.compared, 1e-12):.2f}"
        out.append([before, after, format_area(area, totals.unit).split()[0], share, change_kind(name)])
    return out
