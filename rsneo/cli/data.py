"""`rsneo` commands for data: `sensors` (the band registry), `info` (what a raster holds), `prepare` (shards).

Heavy modules are imported inside the commands so `rsneo --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rsneo.cli.app import app, check_output_folder, reported_warnings


@app.command("sensors")
def sensors_command(
    name: Annotated[str | None, typer.Argument(help="Show one sensor's bands in full.")] = None,
    add: Annotated[
        list[Path] | None, typer.Option("--add", help="Also load this sensor YAML file (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List the known sensors and their bands (built-in, RSNEO_SENSORS folders, and --add YAML files)."""
    from rich.console import Console
    from rich.table import Table

    from rsneo.sensors import get_sensor, list_sensors, register_sensor

    for path in add or []:
        register_sensor(path)
    sensors = [get_sensor(name)] if name else list_sensors()
    if as_json:
        out = [
            {
                "name": s.name,
                "title": s.title,
                "units": s.units,
                "groups": {g: list(m) for g, m in s.groups.items()},
                "bands": [
                    {
                        "name": b.name,
                        "aliases": list(b.aliases),
                        "common_name": b.common_name,
                        "wavelength_um": b.wavelength,
                        "resolution_m": b.resolution,
                        "group": b.group,
                        "mean": b.mean,
                        "std": b.std,
                    }
                    for b in s.bands
                ],
            }
            for s in sensors
        ]
        typer.echo(json.dumps(out, indent=1))
        return
    console = Console()
    if name:
        sensor = sensors[0]
        table = Table(title=f"{sensor.name}: {sensor.title} ({sensor.units})")
        for col in (
            "band",
            "aliases",
            "common name",
            "wavelength um",
            "resolution m",
            "group",
            "mean",
            "std",
        ):
            table.add_column(col)
        for b in sensor.bands:
            res = "-" if b.resolution is None else f"{b.resolution:g}"
            table.add_row(
                b.name, ",".join(b.aliases), b.common_name, f"{b.wavelength:g}", res, b.group,
                f"{b.mean:g}", f"{b.std:g}",
            )  # fmt: skip
        console.print(table)
        return
    table = Table(title="sensors")
    for col in ("name", "title", "bands", "groups"):
        table.add_column(col)
    for s in sensors:
        groups = "  ".join(f"{g}={'+'.join(m)}" for g, m in s.groups.items())
        table.add_row(s.name, s.title, " ".join(s.band_names), groups)
    console.print(table)


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


@app.command("info")
def info_command(
    rasters: Annotated[list[Path], typer.Argument(help="Raster files, band folders or STAC item JSONs.")],
    sensor: Annotated[str | None, typer.Option(help="Sensor name when the metadata does not say.")] = None,
    bands: Annotated[
        str | None, typer.Option(help="Comma-separated band names of the file's bands, in file order.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Describe rasters: sensor, bands, wavelengths, CRS, resolution, size, date, nodata, band statistics.

    Statistics come from a read of at most 1024 pixels a side (GDAL overviews where the file has them).
    """
    from rich.console import Console
    from rich.table import Table

    from rsneo.io.describe import describe_raster
    from rsneo.io.limits import check_size
    from rsneo.io.read import open_source

    with reported_warnings():
        for path in rasters:  # a VRT may declare 10^12 pixels: refuse before the statistics read it
            check_size(open_source(path, sensor=sensor, bands=_split(bands)))
        reports = [describe_raster(path, sensor=sensor, bands=_split(bands)) for path in rasters]
    if as_json:
        typer.echo(json.dumps(reports, indent=1))
        return
    console = Console()
    for rep in reports:
        console.print(
            f"[bold]{rep['path']}[/]\n  sensor {rep['sensor']}  crs {rep['crs'] or 'none (pixel units)'}  "
            f"resolution {rep['resolution'][0]:g} x {rep['resolution'][1]:g}  size {rep['width']} x "
            f"{rep['height']}  date {rep['date'] or 'unknown'}  dtype {rep['dtype']}  "
            f"nodata {100 * rep['nodata_fraction']:.2f}%",
            highlight=False,
        )
        table = Table(show_edge=False)
        for col in ("band", "common name", "wavelength um", "min", "max", "mean", "std"):
            table.add_column(col)
        for b in rep["bands"]:
            stats = [f"{b[k]:.4g}" if b[k] is not None else "-" for k in ("min", "max", "mean", "std")]
            table.add_row(b["name"], b["common_name"], f"{b['wavelength_um']:g}", *stats)
        console.print(table)


@app.command("prepare")
def prepare_command(
    recipe: Annotated[
        str,
        typer.Argument(
            help="sen1floods11, bigearthnet, timeseries, taizhou, captions, change (A/ B/ label/ [list/] "
            "pairs) or segmentation (images + --masks + --classes)."
        ),
    ],
    source: Annotated[Path, typer.Argument(help="The archive folder (or captions JSON, or the images).")],
    out: Annotated[Path, typer.Argument(help="Shard folder to write (resumes if it holds finished shards).")],
    tile: Annotated[int, typer.Option(help="Tile size in pixels (a multiple of 32 suits the model).")] = 256,
    items_per_shard: Annotated[
        int | None, typer.Option(help="Source items (chips, patches, series) per shard; default per recipe.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    sensor: Annotated[
        str | None, typer.Option(help="Sensor of the rasters (timeseries, change, segmentation).")
    ] = None,
    bands: Annotated[str | None, typer.Option(help="Comma-separated band names in file order.")] = None,
    masks: Annotated[
        Path | None,
        typer.Option(help="segmentation: the mask rasters (a folder matched by name, or one file)."),
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option(
            help='Class table VALUE=NAME, e.g. "1=water,2=forest,ignore=255" (change: 0/255 by default).'
        ),
    ] = None,
    split: Annotated[str | None, typer.Option(help="change: only this split (train, val or test).")] = None,
    pixel_size: Annotated[
        float | None,
        typer.Option(help="change: metres per pixel of images without georeference (LEVIR: 0.5)."),
    ] = None,
) -> None:
    """Turn an archive into streaming shards (WebDataset tars) with per-band statistics and a manifest.

    Re-running into the same folder keeps finished shards and makes only the missing ones.
    """
    from rsneo.data.labelled import ClassTable
    from rsneo.data.recipes import RECIPES, tile_loader
    from rsneo.data.shards import prepare_shards
    from rsneo.errors import InputError

    if recipe not in RECIPES:
        raise InputError(f"unknown recipe {recipe!r}: expected one of {', '.join(RECIPES)}")
    if not source.exists():
        raise InputError(f"{source}: source archive not found")
    if tile <= 0:
        raise InputError(f"--tile: expected a positive number of pixels, got {tile}")
    check_output_folder(out)
    _check_earlier_run(out, recipe, tile)
    chosen = RECIPES[recipe]
    options = {
        "sensor": sensor, "bands": _split(bands), "masks": masks, "split": split, "pixel_size": pixel_size,
        "classes": ClassTable.parse(classes) if classes is not None else None,
    }  # fmt: skip
    with reported_warnings():
        items = chosen.items(source, **options)
        for item in items:  # headers (and labels) only: bad input fails before anything is written
            chosen.check(item)
    manifest = prepare_shards(
        items,
        tile_loader(recipe, tile),
        out,
        items_per_shard or chosen.items_per_shard,
        workers=workers,
        info={"recipe": recipe, "source": str(source), "tile": tile},
    )
    typer.echo(f"{out}: {manifest['num_samples']} samples in {len(manifest['shards'])} shards")


def _check_earlier_run(out: Path, recipe: str, tile: int) -> None:
    """A folder `prepare` resumes must hold the same recipe and tile size, and readable shard records."""
    from rsneo.data.shards import MANIFEST, read_manifest
    from rsneo.errors import InputError

    if (out / MANIFEST).exists():
        manifest = read_manifest(out)
        made = {"recipe": manifest.get("recipe"), "tile": manifest.get("tile")}
        if made != {"recipe": recipe, "tile": tile}:
            raise InputError(
                f"{out}: holds shards made by recipe {made['recipe']} with --tile {made['tile']}; expected "
                f"{recipe} with --tile {tile} to resume there (or choose another folder)"
            )
    for record in sorted(out.glob("shard-*.json")) if out.is_dir() else []:
        try:
            json.loads(record.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(
                f"{record}: a damaged record of an earlier run (not valid JSON); delete it and "
                f"{record.with_suffix('.tar').name} to have that shard made again"
            ) from None
