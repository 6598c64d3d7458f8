"""`rsneo learn`: teach a model new classes from polygons or points drawn in a GIS.

Heavy modules are imported inside the command so `rsneo --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsneo.cli.app import app, check_output_folder, err_console, reported_warnings


@app.command("learn")
def learn_command(
    rasters: Annotated[list[Path], typer.Argument(help="The raster(s) the labels were drawn on.")],
    labels: Annotated[
        Path, typer.Option("--labels", help="Polygons or points (GeoPackage, Shapefile, GeoJSON; any CRS).")
    ],
    class_field: Annotated[
        str, typer.Option("--class-field", help="The field holding each feature's class.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write (a new or empty folder).")],
    model: Annotated[
        Path | None, typer.Option("--model", help="Model folder to start from. Default: the bundled model.")
    ] = None,
    sensor: Annotated[
        str | None, typer.Option("--sensor", help="Sensor name when the raster's metadata does not tell.")
    ] = None,
    bands: Annotated[
        str | None, typer.Option("--bands", help="The raster's band names in file order, e.g. B5,B4,B3,B2.")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Training steps of the head.")] = 300,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 3e-3,
    holdout: Annotated[
        float,
        typer.Option("--holdout", help="Share of each class's features held out for the score (0: none)."),
    ] = 0.25,
    refit: Annotated[
        bool,
        typer.Option(
            "--refit/--no-refit", help="Train again on every feature (hold-out included) at the end."
        ),
    ] = True,
    window: Annotated[int, typer.Option("--window", help="Window size in pixels (a multiple of 32).")] = 256,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the hold-out split and the training.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out folder.")] = False,
    device: Annotated[
        str, typer.Option("--device", help="Device of the backbone pass: cpu, cuda, ...")
    ] = "cpu",
) -> None:
    """Learn new classes from a few polygons or points; writes a model folder for segment/change/ask --model.

    The backbone stays frozen; the segmentation head and one vector per class train in minutes on a CPU.
    Whole features are held out by spatial blocks and scored (IoU, F1 per class) before the final fit.
    Then: rsneo segment RASTER --model OUT --classes "<the learnt class names>".
    """
    from rich.console import Console
    from rich.table import Table

    from rsneo.cli.products import _bands, _system
    from rsneo.train.learn import LearnSettings, learn

    settings = LearnSettings(steps=steps, lr=lr, holdout=holdout, refit=refit, window=window, seed=seed)
    check_output_folder(out)
    with reported_warnings():
        system = _system(model, device)
        result = learn(
            system, rasters, labels, class_field, out, settings=settings, sensor=sensor, bands=_bands(bands),
            overwrite=overwrite, show_progress=True,
        )  # fmt: skip
    table = Table(title="hold-out score (whole features held out by spatial blocks)")
    for column in ("class", "IoU", "F1", "held-out pixels", "held-out features"):
        table.add_column(column, justify="left" if column == "class" else "right")
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
    for name, score in result.scores.items():
        table.add_row(name, fmt(score.iou), fmt(score.f1), f"{score.pixels:,}", f"{score.features:,}")
    Console().print(table)
    holdout_info = result.record["holdout"]
    typer.echo(f"mean IoU {fmt(holdout_info['mean_iou'])}, mean F1 {fmt(holdout_info['mean_f1'])}")
    if all(s.iou is None for s in result.scores.values()):
        err_console.print("[yellow]warning:[/] no feature could be held out; no score", highlight=False)
    typer.echo(f"model folder: {result.out} ({holdout_info['written_model']})")
    names = ", ".join(result.classes)
    typer.echo(f'use it: rsneo segment RASTER --model {result.out} --classes "{names}"')
