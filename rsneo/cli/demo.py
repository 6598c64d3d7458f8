"""`rsneo demo`: run the bundled model on the bundled samples and say where everything went."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsneo.cli.app import app, reported_warnings


@app.command(
    epilog="Example: rsneo demo --out demo-out  (then open demo-out/overview.png, or the .qgz in QGIS)"
)
def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the demo's outputs (created if needed).")
    ] = Path("demo-out"),
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", help="A model folder to use instead of the bundled one (rsneo/assets/model)."
        ),
    ] = None,
    window: Annotated[
        int, typer.Option("--window", help="Sliding-window size in pixels (multiple of 32).")
    ] = 256,
) -> None:
    """Segment a Sentinel-2 scene, report changes in a Landsat pair and answer a question, offline.

    Writes a Cloud-Optimised GeoTIFF, a GeoPackage and a QGIS project for the segmentation, a change map and
    an HTML change report, the answer as text, and OUT/overview.png, a picture of all of it.
    """
    from rsneo.demo import print_summary, run_demo

    with reported_warnings():  # e.g. the Landsat-7 pair, outside the change head's training data
        result = run_demo(out, model=model, window=window, show_progress=True)
    print_summary(result)
