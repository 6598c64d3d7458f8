"""`rsneo` commands for products: `segment` (classes as words), `change` (dates of one place), `ask`
(questions).

Heavy modules are imported inside the commands so `rsneo --help` stays fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from rsneo.cli.app import app, err_console, reported_warnings

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


def _plan(window: int, overlap: int, batch: int):
    from rsneo.errors import InputError
    from rsneo.predict.sliding_window import WindowPlan

    if window <= 0:
        raise InputError(f"--window: expected a positive number of pixels, got {window}")
    if not 0 <= overlap < window:
        raise InputError(f"--overlap: expected 0 <= overlap < window ({window}), got {overlap}")
    if batch < 1:
        raise InputError(f"--batch: expected at least 1, got {batch}")
    return WindowPlan(window, overlap, batch)


def _check_window(plan, token_size: int) -> None:
    """Windows hold whole image tokens of the model (its config's `token_size`); known once it has loaded."""
    from rsneo.errors import InputError

    if plan.size % token_size:
        raise InputError(
            f"--window: expected a multiple of the model's token size ({token_size} pixels), got {plan.size}"
        )


def _check_outputs(min_area: str, simplify: str | None) -> None:
    """--min-area and --simplify read before any model work (the products read them again)."""
    from affine import Affine

    from rsneo.io.sieve import parse_min_area
    from rsneo.io.vector import simplify_tolerance

    parse_min_area(min_area)
    simplify_tolerance(simplify, Affine.identity())


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


BandGroupsOption = Annotated[
    str | None,
    typer.Option(
        "--band-groups",
        help="How bands become tokens: 'sensor' (one token grid per band group) or 'fold' (all bands of a "
        "date in one grid, 1/groups of the tokens). Default: as the model was trained (its config says).",
    ),
]


def _system(model: Path | None, device: str, head: str | None = None, band_groups: str | None = None):
    """Load the model folder; say so when the head a command relies on was never trained there, or when the
    band grouping asked for is not the one it was trained with (its inputs then differ from training)."""
    from rsneo.data.frames import check_band_groups, model_band_groups
    from rsneo.heads.system import load_system

    if band_groups is not None:
        band_groups = check_band_groups(band_groups, "--band-groups")
    system = load_system(model, device=device)
    if head is not None and head not in system.trained_heads:
        err_console.print(
            f"[yellow]warning:[/] {system.folder} has no trained {head} head; using a fresh one",
            highlight=False,
        )
    trained = model_band_groups(system.config)
    if band_groups is not None and band_groups != trained:
        err_console.print(
            f"[yellow]warning:[/] {system.folder} was trained with --band-groups {trained}; using "
            f"{band_groups} as asked (expect less accurate results)",
            highlight=False,
        )
        system.config.band_groups = band_groups
    return system


StrictOption = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Refuse class names the model was not trained on, and imagery outside what it was trained on "
        "(sensor, pixel size; its folder's domain.json) (exit 2).",
    ),
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
PixelSizeOption = Annotated[
    float | None,
    typer.Option("--pixel-size", help="New buildings: metres per pixel of images without georeference."),
]


@app.command("segment")
def segment_command(
    raster: Annotated[Path, typer.Argument(help="The raster to segment (GeoTIFF or anything GDAL reads).")],
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
    strict: StrictOption = False,
    min_area: MinAreaOption = "2px",
    simplify: SimplifyOption = None,
) -> None:
    """Open-vocabulary segmentation: class-map COG, polygons, QML style and QGIS project.

    Class names are free text, read by the model's text path. A name far from every class the model was
    trained on (its folder's vocabulary.json) gives an arbitrary map: it is warned about and marked
    "(untrained)" in the legend. So is imagery of a sensor or pixel size the model was not trained on (its
    folder's domain.json): warned about and noted in the outputs. --strict refuses both.

    An interrupted run started again with the same options continues where it stopped.
    """
    from rsneo.predict.requests import SegmentRequest, parse_classes
    from rsneo.predict.segment import segment_raster

    names = parse_classes(classes)
    plan = _plan(window, overlap, batch)
    _check_outputs(min_area, simplify)
    with reported_warnings():
        _check_rasters([raster], sensor, _bands(bands), out)
    with _output_folder(out), reported_warnings():
        system = _system(model, device, "segmentation", band_groups)
        _check_window(plan, system.config.token_size)
        request = SegmentRequest(
            raster=raster, classes=names, out=out, sensor=sensor, bands=_bands(bands), plan=plan,
            none_threshold=none_threshold, strict=strict, show_progress=True, min_area=min_area,
            simplify=simplify,
        )  # fmt: skip
        result = segment_raster(system, request)
    typer.echo(f"class map: {result.cog}")
    typer.echo(f"polygons:  {result.gpkg}")
    typer.echo(f"style:     {result.qml}")
    typer.echo(f"project:   {result.qgz}")
    from rsneo.io.areas import format_area

    if result.sieve:
        typer.echo(f"areas after the {result.sieve}:")
    for name, area in result.areas.items():
        typer.echo(f"  {result.labels.get(name, name)}: {format_area(area, result.area_unit)}")


def _buildings(of: str | None, classes: list[str] | None) -> bool:
    """Whether `--of` asks for the new-building map (the one kind of change mapped apart)."""
    from rsneo.errors import InputError

    if of is None:
        return False
    if of.strip().lower() not in ("building", "buildings"):
        raise InputError(f"--of: expected buildings (the one kind of change mapped apart), got {of!r}")
    if classes:
        raise InputError("--of buildings maps new buildings; it cannot be combined with --classes")
    return True


@app.command("change")
def change_command(
    rasters: Annotated[
        list[Path], typer.Argument(help="BEFORE AFTER [MORE...]: dates of one place, oldest first.")
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
) -> None:
    """Change between the first and last date: change-map COG, polygons, from-to table, HTML report.

    Later dates are reprojected onto the first one's grid when their grids differ.

    Images without georeference (PNG pairs) are compared pixel by pixel: areas in pixels, with a warning.
    """
    from rsneo.predict.buildings import map_new_buildings
    from rsneo.predict.change import detect_change
    from rsneo.predict.change_classes import MAX_FROM_TO_CLASSES
    from rsneo.predict.requests import BuildingsRequest, ChangeRequest, parse_classes

    names = parse_classes(classes, MAX_FROM_TO_CLASSES - 1) if classes is not None else None
    plan = _plan(window, overlap, batch)
    _check_outputs(min_area, simplify)
    with reported_warnings():
        _check_rasters(rasters, sensor, _bands(bands), out)
    with _output_folder(out), reported_warnings():
        system = _system(model, device, "change", band_groups)
        _check_window(plan, system.config.token_size)
        reading = dict(sensor=sensor, bands=_bands(bands), plan=plan, show_progress=True, min_area=min_area,
                       simplify=simplify)  # fmt: skip
        if _buildings(of, names):
            result = map_new_buildings(
                system, BuildingsRequest(rasters=rasters, out=out, pixel_size=pixel_size, **reading)
            )
        else:
            result = detect_change(
                system, ChangeRequest(rasters=rasters, out=out, classes=names, strict=strict, **reading)
            )
    from rsneo.io.areas import format_area

    changed = format_area(result.changed_area, result.area_unit)
    compared = format_area(result.compared_area, result.area_unit)
    share = 100 * result.changed_area / max(result.compared_area, 1e-12)
    typer.echo(f"changed: {changed} of {compared} ({share:.2f} %)" + (f", after the {result.sieve}"
                                                                       if result.sieve else ""))  # fmt: skip
    typer.echo(f"change map: {result.cog}")
    typer.echo(f"polygons:   {result.gpkg}")
    typer.echo(f"table:      {result.table}")
    typer.echo(f"project:    {result.qgz}")
    typer.echo(f"report:     {result.report}")


@app.command("ask")
def ask_command(
    rasters: Annotated[
        list[Path], typer.Argument(help="One raster, or several dates of one place, oldest first.")
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
    pixel_size: PixelSizeOption = None,
    min_area: MinAreaOption = "2px",
) -> None:
    """Ask a question about a raster, or one question over a time series of rasters."""
    from rsneo.predict.ask import ask, check_request
    from rsneo.predict.requests import AskRequest

    request = AskRequest(
        rasters=rasters, question=question, sensor=sensor, bands=_bands(bands), max_side=max_side,
        pixel_size=pixel_size, min_area=min_area,
    )  # fmt: skip
    check_request(request)
    with reported_warnings():
        _check_rasters(rasters, sensor, _bands(bands))
        system = _system(model, device, band_groups=band_groups)
        answer = ask(system, request)
    typer.echo(answer.text)
