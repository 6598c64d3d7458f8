"""`rsneo` commands for products: `segment` (classes as words), `change` (dates of one place), `ask`
(questions); a thin layer over the Python API (`rsneo.api`).

Each takes one raster or many (several files, folders, globs, STAC ItemCollections, http(s) COG URLs): with
several, each input writes into its own subfolder of --out and resumes on its own, a bad one is reported and
skipped, a summary table lists the rest, and the command exits 2 at the end when any failed. `--json` prints
one document on stdout describing what was written (rsneo.cli.documents); warnings go to stderr only.
Heavy modules are imported inside the commands so `rsneo --help` stays fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from rsneo.cli.app import app, reported_warnings
from rsneo.cli.batch import Batch, item_folder, write_summary
from rsneo.cli.inputs import Item, expand_inputs

ModelOption = Annotated[
    Path | None,
    typer.Option(
        "--model", help="Model folder (config, weights, tokenizer, heads). Default: the bundled model."
    ),
]
SensorOption = Annotated[
    str | None,
    typer.Option("--sensor", help="Sensor name when the raster's metadata does not tell (rsneo sensors)."),
]
BandsOption = Annotated[
    str | None, typer.Option("--bands", help="The raster's band names in file order, e.g. B5,B4,B3,B2.")
]
WindowOption = Annotated[
    int, typer.Option("--window", help="Window size in pixels (whole model tokens: multiples of 32 for NEO).")
]
OverlapOption = Annotated[int, typer.Option("--overlap", help="Overlap between windows in pixels.")]
BatchOption = Annotated[int, typer.Option("--batch", help="Windows per model call.")]
OUTPUT_BYTES_PER_PIXEL = 4.0  # uint8 map + its partial copy + overviews + polygons, with headroom
DeviceOption = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, ...")]
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        "--threads",
        help="CPU threads for the model (default: RSNEO_THREADS, else the cores this process may use that "
        "other work leaves free, at most 8).",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="One JSON document on stdout: files, totals, warnings (docs/products.md)."),
]
ScoresJsonOption = Annotated[  # learn and finetune: they write a model folder
    bool,
    typer.Option("--json", help="Print one JSON document on stdout: folder, scores (docs/products.md)."),
]
BandGroupsOption = Annotated[
    str | None,
    typer.Option(
        "--band-groups",
        help="How bands become tokens: 'sensor' (one token grid per band group) or 'fold' (all bands of a "
        "date in one grid, 1/groups of the tokens). Default: as the model was trained (its config says).",
    ),
]
StrictOption = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Refuse class names the model was not trained on, and imagery outside what it was trained on "
        "(sensor, pixel size; its folder's domain.json) (exit 2).",
    ),
]
PixelSizeOption = Annotated[
    float | None,
    typer.Option("--pixel-size", help="New buildings: metres per pixel of images without georeference."),
]
MinAreaOption = Annotated[
    str,
    typer.Option(
        "--min-area",
        help="Minimum mapping unit: regions of the class map smaller than this take the class of their "
        "largest neighbour before polygons are traced (the COG too, so both agree): hectares (0.5) or pixels "
        "(4px); 0 keeps every pixel.",
    ),
]
SimplifyOption = Annotated[
    str | None,
    typer.Option(
        "--simplify",
        help="Simplify polygon outlines, neighbours' shared edges alike: a tolerance in map units (20) or "
        "pixels (1.5px). Areas stay those of the pixels.",
    ),
]
SUMMARY_CSV = "summary.csv"


def _check_outputs(min_area: str, simplify: str | None) -> None:
    """--min-area and --simplify read before any model work (the products read them again)."""
    from affine import Affine

    from rsneo.io.sieve import parse_min_area
    from rsneo.io.vector import simplify_tolerance

    parse_min_area(min_area)
    simplify_tolerance(simplify, Affine.identity())


@contextlib.contextmanager
def _output_folder(out: Path) -> Iterator[Path]:
    """The output folder; if this command created it and fails, it is removed again (nothing left behind)."""
    out = Path(out)
    existed = out.exists()
    try:
        yield out
    except BaseException:
        if not existed and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def _bands(text: str | None) -> list[str] | None:
    return None if text is None else [b.strip() for b in text.split(",") if b.strip()]


def _check_rasters(
    rasters: list[Path], sensor: str | None, bands: list[str] | None, out: Path | None = None
) -> None:
    """Open every input as the data reader does (file, band folder, STAC item) before the model loads.

    A missing, empty, truncated or foreign file, a header given for its data, a band list that does not fit,
    a raster too large to process or with no valid pixel, or outputs that would not fit on the disk fail
    here in seconds; the reader's warnings (pixel units) are the same in every command.
    """
    from rsneo.io.limits import check_disk, check_has_valid_pixels, check_size
    from rsneo.io.read import open_source

    for raster in rasters:
        source = open_source(raster, sensor=sensor, bands=bands)
        check_size(source)
        check_has_valid_pixels(source)
        if out is not None:  # class/change map, its partial copy and overviews: a few bytes per pixel
            check_disk(source, out, OUTPUT_BYTES_PER_PIXEL)


def _threads(threads: int | None) -> int:
    """The thread count, checked before any input is read (a bad --threads or RSNEO_THREADS: exit 2)."""
    from rsneo.model.threads import use_threads

    return use_threads(threads)


def _load(model: Path | None, device: str, band_groups: str | None, threads: int):
    from rsneo.api import load

    return load(model, device=device, band_groups=band_groups, threads=threads)


def _emit(document: Any, as_json: bool) -> None:
    if as_json:
        from rsneo.cli.documents import render

        typer.echo(render(document))


def _remote_vrt(local: Path, item_source: str) -> str | None:
    """The local VRT that streams a remote input (None for a local one)."""
    return str(local) if _remote(item_source) else None


@app.command("segment")
def segment_command(
    rasters: Annotated[
        list[str],
        typer.Argument(
            help="Rasters to segment: files (anything GDAL reads), folders, globs, STAC items or "
            "ItemCollections, http(s) COG URLs (/vsicurl/, /vsis3/, s3://). Several: one subfolder each."
        ),
    ],
    classes: Annotated[str, typer.Option("--classes", help='Class names as words: "water,forest,built-up".')],
    out: Annotated[Path, typer.Option("--out", help="Output folder (created if needed).")],
    model: ModelOption = None,
    sensor: SensorOption = None,
    bands: BandsOption = None,
    none_threshold: Annotated[
        float | None, typer.Option("--none-threshold", help='Cosine below which a pixel is "none of these".')
    ] = None,
    window: WindowOption = 256,
    overlap: OverlapOption = 32,
    batch: BatchOption = 4,
    band_groups: BandGroupsOption = None,
    device: DeviceOption = "cpu",
    threads: ThreadsOption = None,
    strict: StrictOption = False,
    min_area: MinAreaOption = "2px",
    simplify: SimplifyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Open-vocabulary segmentation: class-map COG, polygons, QML style and QGIS project.

    Class names are free text, read by the model's text path. A name far from every class the model was
    trained on (its folder's vocabulary.json) gives an arbitrary map: it is warned about and marked
    "(untrained)" in the legend. So is imagery of a sensor or pixel size the model was not trained on (its
    folder's domain.json): warned about and noted in the outputs. --strict refuses both.

    Several inputs: out/<name>/ for each and out/summary.csv (hectares per class and file); a bad input is
    reported and skipped (exit 2 at the end). An interrupted run started again with the same options
    continues where it stopped, each input on its own.
    """
    from rsneo.api import window_plan
    from rsneo.cli.documents import SegmentDocument
    from rsneo.predict.requests import parse_classes
    from rsneo.version import __version__

    names = parse_classes(classes)
    window_plan(window, overlap, batch)
    _check_outputs(min_area, simplify)
    threads = _threads(threads)
    with reported_warnings() as warned:
        run: Batch = Batch(expand_inputs(rasters))
        local: dict[str, Path] = {}

        def check(item: Item) -> None:
            folder = item_folder(out, item, run.several)
            with _output_folder(folder):
                local[item.name] = item.local(folder)
                _check_rasters([local[item.name]], sensor, _bands(bands), folder)

        run.each(check, "check")
        if run.results:
            m = _load(model, device, band_groups, threads)

            def segment(item: Item):
                folder = item_folder(out, item, run.several)
                with _output_folder(folder):
                    return m.segment(
                        local[item.name], names, folder, sensor=sensor, bands=_bands(bands),
                        none_threshold=none_threshold, window=window, overlap=overlap, batch=batch,
                        strict=strict, show_progress=not as_json, min_area=min_area, simplify=simplify,
                    )  # fmt: skip

            run.each(segment, "segment")
    summary = _segment_summary(run, out, names) if run.several else None
    document = SegmentDocument(
        rsneo=__version__, ok=not run.errors, warnings=warned, failed=run.failures(),
        items=[_segment_item(item, result, local[item.name]) for item, result in run.done],
        summary=str(summary) if summary else None,
    )  # fmt: skip
    if as_json:
        _emit(document, True)
    else:
        _print_segmentations(document)
    run.finish()


def _segment_item(item: Item, result: Any, local: Path) -> dict[str, Any]:
    files = result.outputs
    return {
        "name": item.name, "input": item.source, "out": str(files.cog.parent),
        "files": {
            "class_map": str(files.cog), "confidence": str(files.confidence) if files.confidence else None,
            "polygons": str(files.gpkg), "style": str(files.qml), "project": str(files.qgz),
            "remote_input": _remote_vrt(local, item.source),
        },
        "areas": result.areas, "area_unit": result.area_unit, "labels": files.labels,
        "notes": list(result.notes), "sieve": getattr(files, "sieve", "") or None,
    }  # fmt: skip


def _segment_summary(run: Batch, out: Path, names: list[str]) -> Path:
    unit = next((r.area_unit for _, r in run.done), "ha")
    rows = [[item.name, item.source, *(f"{r.areas.get(n, 0.0):.4f}" for n in names), str(r.outputs.cog)]
            for item, r in run.done]  # fmt: skip
    header = ["name", "input", *(f"{n}_{unit}" for n in names), "class_map"]
    return write_summary(Path(out) / SUMMARY_CSV, header, rows)


def _print_segmentations(document: Any) -> None:
    from rsneo.io.areas import format_area

    for item in document.items:
        if len(document.items) > 1:
            typer.echo(f"{item.name}:")
        typer.echo(f"class map: {item.files.class_map}")
        typer.echo(f"polygons:  {item.files.polygons}")
        typer.echo(f"style:     {item.files.style}")
        typer.echo(f"project:   {item.files.project}")
        if item.sieve:
            typer.echo(f"areas after the {item.sieve}:")
        for name, area in item.areas.items():
            typer.echo(f"  {item.labels.get(name, name)}: {format_area(area, item.area_unit)}")
    if document.summary:
        typer.echo(f"summary:   {document.summary}")


def _date_items(rasters: list[str]) -> list[list[Item]]:
    """Dates of one place, or of many: each argument is one date, or a folder / glob / ItemCollection of that
    date's inputs, matched across dates by name (LEVIR-CD's A/ and B/) or, for STAC items, by order."""
    from rsneo.errors import InputError

    dates = [expand_inputs([r]) for r in rasters]
    counts = {len(d) for d in dates}
    if len(counts) != 1:
        raise InputError(
            f"change: every date must hold the same number of inputs; got {[len(d) for d in dates]} for "
            f"{rasters}"
        )
    if counts == {1}:
        return [[d[0] for d in dates]]
    if all(d[0].stac is not None for d in dates):
        return [list(pair) for pair in zip(*dates, strict=True)]
    names = [sorted(i.name for i in d) for d in dates]
    if any(n != names[0] for n in names):
        raise InputError(f"change: the dates' inputs must have the same file names to pair them; got {names}")
    return [[next(i for i in d if i.name == name) for d in dates] for name in names[0]]


@app.command("change")
def change_command(
    rasters: Annotated[
        list[str],
        typer.Argument(
            help="BEFORE AFTER [MORE...]: dates of one place, oldest first (files, STAC items, URLs); or one "
            "folder / glob / ItemCollection per date, paired by file name (or STAC item order)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder (created if needed).")],
    classes: Annotated[
        str | None,
        typer.Option("--classes", help='Class names for from-to change: "water,vegetation,built-up".'),
    ] = None,
    model: ModelOption = None,
    sensor: SensorOption = None,
    bands: BandsOption = None,
    window: WindowOption = 256,
    overlap: OverlapOption = 32,
    batch: BatchOption = 2,
    band_groups: BandGroupsOption = None,
    device: DeviceOption = "cpu",
    threads: ThreadsOption = None,
    strict: StrictOption = False,
    of: Annotated[
        str | None,
        typer.Option(
            "--of",
            help="buildings: map new buildings only (RGB imagery of 2 m or finer; a building index, not the "
            "model).",
        ),
    ] = None,
    pixel_size: PixelSizeOption = None,
    min_area: MinAreaOption = "2px",
    simplify: SimplifyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change between the first and last date: change-map COG, polygons, from-to table, HTML report.

    Later dates are reprojected onto the first one's grid when their grids differ.

    Images without georeference (PNG pairs) are compared pixel by pixel: areas in pixels, with a warning.
    Many places at once: one folder (or glob) per date, paired by file name; out/<name>/ for each pair and
    out/summary.csv.
    """
    from rsneo.api import wants_buildings, window_plan
    from rsneo.cli.documents import ChangeDocument
    from rsneo.errors import InputError
    from rsneo.predict.change_classes import MAX_FROM_TO_CLASSES
    from rsneo.predict.requests import parse_classes
    from rsneo.version import __version__

    names = parse_classes(classes, MAX_FROM_TO_CLASSES - 1) if classes is not None else None
    buildings = wants_buildings(of, names)
    window_plan(window, overlap, batch)
    _check_outputs(min_area, simplify)
    threads = _threads(threads)
    if len(rasters) < 2:
        raise InputError(f"change: expected two or more rasters (dates of one place), got {len(rasters)}")
    with reported_warnings() as warned:
        pairs = {group[0].name: group for group in _date_items(rasters)}
        run: Batch = Batch([group[0] for group in pairs.values()])
        local: dict[str, list[Path]] = {}

        def check(item: Item) -> None:
            folder = item_folder(out, item, run.several)
            with _output_folder(folder):
                local[item.name] = [date.local(folder) for date in pairs[item.name]]
                _check_rasters(local[item.name], sensor, _bands(bands), folder)

        run.each(check, "check")
        if run.results:
            m = _load(model, device, band_groups, threads)

            def change(item: Item):
                folder = item_folder(out, item, run.several)
                with _output_folder(folder):
                    return m.change(
                        *local[item.name], out=folder, classes=names, of=of, pixel_size=pixel_size,
                        sensor=sensor, bands=_bands(bands), window=window, overlap=overlap, batch=batch,
                        strict=strict, show_progress=not as_json, min_area=min_area, simplify=simplify,
                    )  # fmt: skip

            run.each(change, "change")
    items = [_change_item(item, pairs[item.name], result, local[item.name]) for item, result in run.done]
    summary = None
    if run.several:
        keys = ("changed_area", "compared_area", "changed_percent")
        rows = [[i["name"], " ".join(i["inputs"]), *(f"{i[k]:.4f}" for k in keys), i["area_unit"],
                 i["files"]["change_map"]] for i in items]  # fmt: skip
        header = ["name", "inputs", "changed", "compared", "changed_percent", "unit", "change_map"]
        summary = str(write_summary(Path(out) / SUMMARY_CSV, header, rows))
    document = ChangeDocument(
        rsneo=__version__, ok=not run.errors, warnings=warned, failed=run.failures(),
        kind="buildings" if buildings else "change", items=items, summary=summary,
    )  # fmt: skip
    if as_json:
        _emit(document, True)
    else:
        _print_changes(document)
    run.finish()


def _remote(text: str) -> bool:
    from rsneo.io.remote import is_remote

    return is_remote(text)


def _change_item(item: Item, dates: list[Item], result: Any, local: list[Path]) -> dict[str, Any]:
    files = result.outputs
    share = 100 * result.changed_area / max(result.compared_area, 1e-12)
    return {
        "name": item.name, "inputs": [d.source for d in dates], "out": str(files.cog.parent),
        "files": {
            "change_map": str(files.cog), "polygons": str(files.gpkg), "style": str(files.qml),
            "project": str(files.qgz), "table": str(files.table), "report": str(files.report),
            "remote_inputs": [str(p) for d, p in zip(dates, local, strict=True) if _remote(d.source)],
        },
        "changed_area": result.changed_area, "compared_area": result.compared_area, "changed_percent": share,
        "area_unit": result.area_unit, "classes": _table_areas(files.table), "summary": result.summary,
        "notes": list(result.notes), "sieve": getattr(files, "sieve", "") or None,
    }  # fmt: skip


def _table_areas(table: Path) -> dict[str, float]:
    """The from-to table's rows as {"from → to" (or the class): area}."""
    import csv

    with open(table, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return {(f"{r[0]} → {r[1]}" if r[1] else r[0]): float(r[2]) for r in rows[1:] if r}


def _print_changes(document: Any) -> None:
    from rsneo.io.areas import format_area

    for item in document.items:
        if len(document.items) > 1:
            typer.echo(f"{item.name}:")
        changed = format_area(item.changed_area, item.area_unit)
        compared = format_area(item.compared_area, item.area_unit)
        after = f", after the {item.sieve}" if item.sieve else ""
        typer.echo(f"changed: {changed} of {compared} ({item.changed_percent:.2f} %){after}")
        typer.echo(f"change map: {item.files.change_map}")
        typer.echo(f"polygons:   {item.files.polygons}")
        typer.echo(f"table:      {item.files.table}")
        typer.echo(f"project:    {item.files.project}")
        typer.echo(f"report:     {item.files.report}")
    if document.summary:
        typer.echo(f"summary:    {document.summary}")


@app.command("ask")
def ask_command(
    rasters: Annotated[
        list[str],
        typer.Argument(
            help="One raster, or several dates of one place, oldest first; a folder, glob or ItemCollection "
            "(or --each) asks every input on its own."
        ),
    ],
    question: Annotated[str, typer.Argument(help="The question, in quotes.")],
    model: ModelOption = None,
    sensor: SensorOption = None,
    bands: BandsOption = None,
    max_tokens: Annotated[  # accepted so that existing scripts keep working; unused
        int | None,
        typer.Option(
            "--max-tokens",
            hidden=True,
            help="Deprecated, ignored: answers are read from the maps, not generated token by token.",
        ),
    ] = None,
    max_side: Annotated[
        int,
        typer.Option(
            "--max-side",
            help="Each raster is read whole, resampled to at most this many pixels a side (the answer says "
            "so); 0: full resolution, the maps of segment and change.",
        ),
    ] = 512,
    band_groups: BandGroupsOption = None,
    device: DeviceOption = "cpu",
    threads: ThreadsOption = None,
    pixel_size: PixelSizeOption = None,
    min_area: MinAreaOption = "2px",
    each: Annotated[
        bool, typer.Option("--each", help="Ask about every raster on its own (not as dates of one place).")
    ] = False,
    summary: Annotated[
        Path | None, typer.Option("--summary", help="Also write the answers as a CSV table here.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Ask a question about a raster, one question over a time series of rasters, or about many rasters."""
    import tempfile

    from rsneo.cli.documents import AskDocument
    from rsneo.predict.ask import check_request
    from rsneo.predict.requests import AskRequest
    from rsneo.version import __version__

    # the question and options before any raster or model work
    check_request(AskRequest(rasters=tuple(Path(r) for r in rasters), question=question, max_side=max_side,
                             min_area=min_area))  # fmt: skip
    threads = _threads(threads)
    items = expand_inputs(rasters)
    several = each or len(items) != len(rasters)  # a folder, glob or collection: each input on its own
    groups = {i.name: [i] for i in items} if several else {items[0].name: items}
    with reported_warnings() as warned, tempfile.TemporaryDirectory(prefix="rsneo-ask-") as scratch:
        run: Batch = Batch([group[0] for group in groups.values()])
        local: dict[str, list[Path]] = {}

        def check(item: Item) -> None:
            folder = Path(scratch) / item.name
            folder.mkdir(parents=True, exist_ok=True)
            local[item.name] = [date.local(folder) for date in groups[item.name]]
            _check_rasters(local[item.name], sensor, _bands(bands))

        run.each(check, "check")
        if run.results:
            m = _load(model, device, band_groups, threads)
            ask = lambda item: m.ask(  # noqa: E731
                local[item.name], question, sensor=sensor, bands=_bands(bands), max_side=max_side,
                pixel_size=pixel_size, min_area=min_area,
            )  # fmt: skip
            run.each(ask, "ask")
    answers = [
        {"name": item.name, "inputs": [d.source for d in groups[item.name]], "question": question,
         "answer": a.text, "kind": a.kind, "value": a.value, "abstained": a.abstained}
        for item, a in run.done
    ]  # fmt: skip
    if summary is not None:
        rows = [[a["name"], " ".join(a["inputs"]), a["answer"], a["kind"], a["value"]] for a in answers]
        write_summary(summary, ["name", "inputs", "answer", "kind", "value"], rows)
    document = AskDocument(
        rsneo=__version__, ok=not run.errors, warnings=warned, failed=run.failures(), items=answers,
        summary=str(summary) if summary is not None else None,
    )  # fmt: skip
    if as_json:
        _emit(document, True)
    else:
        for answer in document.items:
            typer.echo(f"{answer.name}: {answer.answer}" if len(document.items) > 1 else answer.answer)
    run.finish()
