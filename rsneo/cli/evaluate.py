"""`rsneo evaluate` (a model on labelled samples) and `rsneo assess` (a map against a reference sample).

Heavy modules are imported inside the commands so `rsneo --help` stays fast.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated

import typer

from rsneo.cli.app import app, err_console, reported_warnings
from rsneo.cli.products import (
    BandsOption,
    BatchOption,
    DeviceOption,
    OverlapOption,
    SensorOption,
    ThreadsOption,
    WindowOption,
    _bands,
    _threads,
)

BUNDLED = "bundled"
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (schema: docs/products.md) instead of tables.")
]


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _matrix(rows: Sequence[str], columns: Sequence[str], values, cell) -> list[str]:
    """Aligned lines of a matrix with row and column names; `cell` formats a value."""
    width = max(len(n) for n in rows)
    cells = [[cell(v) for v in row] for row in values]
    widths = [max(len(c), *(len(r[j]) for r in cells)) for j, c in enumerate(columns)]
    lines = [" " * width + "".join(f"  {c:>{w}}" for c, w in zip(columns, widths, strict=True))]
    for name, row in zip(rows, cells, strict=True):
        lines.append(f"{name:<{width}}" + "".join(f"  {v:>{w}}" for v, w in zip(row, widths, strict=True)))
    return lines


@contextlib.contextmanager
def _summarised_warnings(collected: list[str]) -> Iterator[None]:
    """rsneo's warnings while samples are read, one line per kind (a dataset warns once per file), also
    appended to `collected` for the JSON document."""
    from rsneo.accuracy.evaluate import summarised_warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for line in summarised_warnings(caught):
        _warn(line, collected)


def _warn(line: str, collected: list[str]) -> None:
    """One warning on stderr, kept for the JSON document."""
    collected.append(line)
    err_console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _sample_bar(total: int) -> Iterator:
    """A rich progress bar on stderr (stdout stays clean for --json), one step per sample."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("samples"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("samples", total=total)
        yield lambda _name: bar.advance(task)


def _read_samples(data: Path, masks: Path | None, classes: str | None, split: str | None, chip: int | None,
                  sensor: str | None, bands: list[str] | None) -> list:  # fmt: skip
    from rsneo.data.labelled import ClassTable, change_pairs, mask_chips
    from rsneo.errors import InputError

    if masks is None:
        if classes is not None:
            raise InputError(
                "--classes: change folders are scored as change / no change (labels 0 and 1 or 255); the "
                "class table is for segmentation (DATA images with MASKS)"
            )
        if chip is not None:
            raise InputError("--chip: cuts segmentation images; change pairs are evaluated whole")
        return change_pairs(data, split, sensor=sensor, bands=bands)
    if classes is None:
        raise InputError(f'--classes: expected the class table of the masks in {masks} ("0=land,1=water")')
    if chip is not None and chip < 1:
        raise InputError(f"--chip: expected a positive number of pixels, got {chip}")
    table = ClassTable.parse(classes)
    return mask_chips(data, masks, table, sensor=sensor, bands=bands, chip=chip, split=split)


def _evaluation_lines(evaluation, model_name: str) -> list[str]:
    m = evaluation.model
    lines = [
        f"{m.confusion.sum():,d} labelled pixels scored, {evaluation.unpredicted:,d} without a prediction "
        "(no valid input)",
        "",
        "confusion matrix (pixels; rows: reference, columns: predicted)",
        *_matrix(evaluation.classes, evaluation.columns, m.confusion, lambda v: f"{v:,d}"),
        "",
    ]
    rows = [[s.iou, s.f1, s.precision, s.recall, s.support] for s in m.per_class.values()]
    lines += _matrix(
        list(m.per_class), ["IoU", "F1", "precision", "recall", "pixels"], rows,
        lambda v: f"{v:,d}" if isinstance(v, int) else _number(v),
    )  # fmt: skip
    lines.append(
        f"overall accuracy {_number(m.overall_accuracy)}, kappa {_number(m.kappa)}, mean IoU "
        f"{_number(m.mean_iou)}, mean F1 {_number(m.mean_f1)}"
    )
    if evaluation.baselines:
        changed = evaluation.classes[1]
        methods = {f"rsneo ({model_name})": m, **evaluation.baselines}
        rows = [
            [s.per_class[changed].f1, s.per_class[changed].iou, s.kappa, s.overall_accuracy]
            for s in methods.values()
        ]
        lines += ["", "on the same pixels"]
        lines += _matrix(list(methods), [f"F1 ({changed})", f"IoU ({changed})", "kappa", "accuracy"], rows,
                         _number)  # fmt: skip
    return lines


@app.command("evaluate")
def evaluate_command(
    model: Annotated[
        str, typer.Argument(help=f"A model folder (rsneo export, learn or finetune), or '{BUNDLED}'.")
    ],
    data: Annotated[
        Path,
        typer.Argument(help="A change folder (A/ B/ label/ [list/]), or with MASKS a folder of images."),
    ],
    masks: Annotated[
        Path | None, typer.Argument(help="Segmentation: the folder of masks, matched to images by file name.")
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option("--classes", help='Segmentation: mask value=class name: "0=land,1=water,ignore=-1".'),
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="Only the samples listed in list/SPLIT.txt (e.g. test).")
    ] = None,
    chip: Annotated[
        int | None,
        typer.Option("--chip", help="Segmentation: score CHIP-pixel squares of each image (predicted whole)"),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Keep the maps and evaluation.json here; an interrupted run resumes."),
    ] = None,
    sensor: SensorOption = None,
    bands: BandsOption = None,
    window: WindowOption = 256,
    overlap: OverlapOption = 32,
    batch: BatchOption = 4,
    device: DeviceOption = "cpu",
    threads: ThreadsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Measure a model on labelled data: confusion matrix, per-class IoU, F1, precision, recall, kappa.

    Each image (or pair) goes through `rsneo segment` (or `rsneo change`) as you would run it, so the scores
    are those of the maps users get from this model folder. Change data is scored as change / no change,
    beside change-vector analysis cut by Otsu's threshold and the all-changed map on the same pixels.
    Scores are pooled over all samples.

    --json prints one document: task, classes, predicted_classes, samples, pixels {scored, unpredicted},
    confusion (rows: reference classes, columns: predicted_classes), overall_accuracy, kappa, mean_iou,
    mean_f1, per_class {name: {iou, f1, precision, recall, support, predicted}}, baselines {name: the same
    fields}, per_sample [{name, unpredicted, the same fields}], notes, and the command's inputs.
    """
    from rsneo.accuracy.evaluate import CHANGE, Settings, evaluate
    from rsneo.api import load, window_plan

    window_plan(window, overlap, batch)  # refused before the model loads
    threads = _threads(threads)
    folder = None if model == BUNDLED else Path(model)
    warned: list[str] = []
    with _summarised_warnings(warned):
        samples = _read_samples(data, masks, classes, split, chip, sensor, _bands(bands))
    with reported_warnings(warned):
        model_api = load(folder, device=device, threads=threads)
        model_api.warn_untrained(CHANGE if masks is None else "segmentation")
        plan, system = model_api.plan(window, overlap, batch), model_api.system
        with _sample_bar(len(samples)) as progress:
            evaluation = evaluate(
                system, samples, settings=Settings(plan, sensor, _bands(bands)), out=out, progress=progress
            )
    for note in evaluation.notes:
        err_console.print(f"[yellow]warning:[/] {note}", highlight=False, soft_wrap=True)
    model_name = BUNDLED if folder is None else str(folder)
    if as_json:
        from rsneo.cli.documents import completed

        inputs = {"model": model_name, "data": str(data), "masks": None if masks is None else str(masks),
                  "split": split}  # fmt: skip
        typer.echo(completed("evaluate", warned, **inputs, **evaluation.to_json()))
        return
    what = "pairs" if evaluation.task == CHANGE else "samples"
    typer.echo(f"{evaluation.task}: {len(samples)} {what} of {data}, model {model_name}")
    for line in _evaluation_lines(evaluation, model_name):
        typer.echo(line)


def _interval(estimate, digits: int = 3) -> str:
    if estimate.value is None:
        return "-"
    spread = "" if estimate.ci95 is None else f" ± {estimate.ci95:,.{digits}f}"
    return f"{estimate.value:,.{digits}f}{spread}"


def _assessment_lines(assessment) -> list[str]:
    e, sample = assessment.estimates, assessment.reference
    unit = "pixels" if assessment.unit == "px" else "ha"
    digits = 0 if assessment.unit == "px" else 2
    names = list(e.classes)
    lines = [
        f"map: {assessment.map} ({len(names)} classes)",
        f"reference: {sample.path}, field {sample.field!r}: {sample.features} features "
        f"({', '.join(sample.kinds)}), {sample.map_class.size} on the map, {sample.outside} outside it",
        "",
        "error matrix (sample counts; rows: map, columns: reference)",
        *_matrix(names, names, e.counts, lambda v: f"{v:,d}"),
        "",
        "area-weighted error matrix (share of the assessed area; rows: map, columns: reference)",
        *_matrix(names, names, e.proportions, lambda v: f"{v:.4f}"),
        "",
        f"overall accuracy {_interval(e.overall)} (95% confidence interval)",
    ]
    rows = [
        [_interval(u), _interval(p), f"{a:,.{digits}f}", _interval(area, digits)]
        for u, p, a, area in zip(e.users, e.producers, e.mapped_area, e.area, strict=True)
    ]
    lines += _matrix(names, ["user's", "producer's", f"mapped ({unit})", f"estimated ({unit})"], rows, str)
    lines.append(
        "Estimators of Olofsson et al. (2014) for a stratified random sample by map class; estimated "
        "areas are error-adjusted, with 95% confidence intervals."
    )
    return lines


@app.command("assess")
def assess_command(
    map_path: Annotated[
        Path, typer.Argument(metavar="MAP", help="A class map written by rsneo segment or change (GeoTIFF).")
    ],
    reference: Annotated[
        Path, typer.Argument(help="Reference points or polygons (GeoPackage, Shapefile, GeoJSON; any CRS).")
    ],
    class_field: Annotated[
        str, typer.Option("--class-field", help="The field holding each reference feature's class.")
    ] = "class",
    as_json: JsonOption = False,
) -> None:
    """Assess a map with a reference sample: accuracy and area estimates with 95% confidence intervals.

    Good practice for a map's users (Olofsson et al. 2014, Remote Sensing of Environment 148: 42-57): the
    error matrix of sample counts, the area-weighted error matrix from the map's class areas (hectares on
    the ellipsoid), overall, user's and producer's accuracy, and the error-adjusted area of each class. The
    reference features are read as a stratified random sample with the map classes as strata; a point
    takes the map class under it, a polygon the majority class of its pixels. Reference classes must be
    map class names (case is ignored).

    --json prints one document: map, reference, class_field, unit, classes, sample {features, used,
    outside_map, geometry}, error_matrix (rows: map, columns: reference), area_weighted_error_matrix,
    mapped_area, overall_accuracy {estimate, ci95}, users_accuracy, producers_accuracy, area, area_share
    ({class: {estimate, ci95}}), unsampled_classes, z.
    """
    from rsneo.accuracy.assess import assess_map

    with reported_warnings() as warned:
        assessment = assess_map(map_path, reference, class_field)
    unsampled = [
        (name, area)
        for name, area in zip(assessment.estimates.classes, assessment.estimates.mapped_area, strict=True)
        if name in assessment.estimates.unsampled
    ]
    for name, area in unsampled:
        _warn(
            f"{name}: {area:,.2f} {assessment.unit} of the map has no reference sample; left out of the "
            "estimates",
            warned,
        )
    if as_json:
        from rsneo.cli.documents import completed

        typer.echo(completed("assess", warned, **assessment.to_json()))
        return
    for line in _assessment_lines(assessment):
        typer.echo(line)
