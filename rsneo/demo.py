"""`rsneo demo`: the bundled model on the bundled samples, end to end, offline.

Three products, each written the way the product commands write them: a Sentinel-2 segmentation with typed
class names (COG, GeoPackage, QGIS project), a change report for a Landsat-7 pair, and an answer to a question
about a scene. The Landsat-7 pair is Taizhou, the change test pair of the model card: a sensor the bundled
change head was never trained on (it saw Landsat-5 TM composites, Sentinel-2 and NAIP), so the head's vote is
left out there and the map is the change magnitude alone; the `OutsideTrainingWarning`, the demo's summary,
picture and report say so.
A picture of all of it goes to `overview.png`. Without trained weights in `rsneo/assets/model` the demo runs a
small random model and says so on screen and in the picture.
"""

from __future__ import annotations

import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rsneo import atomic
from rsneo.errors import InputError
from rsneo.heads.system import (
    BUNDLED_MODEL,  # rsneo/assets/model
    load_system,
    random_system,
)
from rsneo.io.cog import check_writable, read_legend
from rsneo.predict.ask import ask
from rsneo.predict.change import detect_change
from rsneo.predict.requests import AskRequest, ChangeRequest, SegmentRequest
from rsneo.predict.segment import segment_raster
from rsneo.predict.sliding_window import WindowPlan

SAMPLES = Path(__file__).resolve().parent / "assets" / "samples"

# The bundled model was trained to tell these two apart (label-as-text); any other words may be typed too.
DEMO_CLASSES = ("water", "land")
DEMO_QUESTION = "How much of the image is water?"
UNVERIFIED = "\n(change magnitude alone: outside the head's training)"


@dataclass(frozen=True)
class DemoSamples:
    """Paths of the bundled sample imagery (see rsneo/assets/ATTRIBUTION.md)."""

    sentinel2: Path  # Sen1Floods11 chip, 13 bands L1C
    sentinel1: Path  # same grid, VV + VH dB
    water_label: Path  # -1 no data, 0 not water, 1 water
    landsat_before: Path  # Taizhou 2000-03-17, ENVI
    landsat_after: Path  # Taizhou 2003-02-06, ENVI
    changed_reference: Path  # sparse reference, 255 = changed
    unchanged_reference: Path  # sparse reference, 255 = unchanged
    bigearthnet_sentinel2: Path  # folder of one band per GeoTIFF
    series: tuple[Path, ...] = field(default_factory=tuple)  # Landsat composites over Pucallpa, by year


def bundled_samples(root: Path = SAMPLES) -> DemoSamples:
    """The bundled samples; fails with a clear message when the package was installed without its assets."""
    taizhou, floods = root / "landsat_change_taizhou", root / "sen1floods11"
    samples = DemoSamples(
        sentinel2=floods / "S2" / "Spain_7370579_S2Hand.tif",
        sentinel1=floods / "S1" / "Spain_7370579_S1Hand.tif",
        water_label=floods / "Labels" / "Spain_7370579_LabelHand.tif",
        landsat_before=taizhou / "2000TM",
        landsat_after=taizhou / "2003TM",
        changed_reference=taizhou / "change.bmp",
        unchanged_reference=taizhou / "unchanged.bmp",
        bigearthnet_sentinel2=next(
            iter(sorted((root / "bigearthnet").glob("S2*"))), root / "bigearthnet" / "S2"
        ),
        series=tuple(sorted((root / "landsat_pucallpa").glob("*.tif"))),
    )
    missing = [
        p for p in (samples.sentinel2, samples.landsat_before, samples.landsat_after) if not p.exists()
    ]
    if missing:
        raise InputError(
            f"bundled samples: expected {missing[0]}, found nothing; reinstall rsneo with its assets"
        )
    return samples


def true_colour(path: Path, bands: tuple[int, int, int]) -> np.ndarray:
    """(H, W, 3) float in [0, 1] from three 1-based bands, stretched between the 2nd and 98th percentiles."""
    import rasterio

    with rasterio.open(path) as src:
        rgb = src.read(list(bands)).astype(np.float64)  # (3, H, W)
    valid = rgb.sum(axis=0) > 0
    for i, band in enumerate(rgb):
        low, high = np.percentile(band[valid], (2, 98)) if valid.any() else (0.0, 1.0)
        rgb[i] = np.clip((band - low) / max(high - low, 1e-9), 0, 1)
    return np.moveaxis(rgb, 0, -1)


def class_picture(path: Path) -> tuple[np.ndarray, list[tuple[str, tuple[float, float, float]]]]:
    """(H, W, 4) RGBA of a class COG through its own colour table, and its legend as (name, rgb) pairs."""
    import rasterio

    legend = read_legend(path)
    with rasterio.open(path) as src:
        classes = src.read(1)
    lut = np.zeros((256, 4))
    for i, colour in enumerate(legend.colors):
        lut[i] = (*(c / 255 for c in colour), 1.0)
    return lut[classes], [
        (n, tuple(c / 255 for c in col)) for n, col in zip(legend.names, legend.colors, strict=True)
    ]


def overview_figure(
    path: Path,
    samples: DemoSamples,
    segmentation: Path,
    change: Path,
    question: str,
    answer: str,
    model_note: str,
    warn: bool = False,
    change_unverified: bool = False,
) -> Path:
    """Write a 2 x 3 panel PNG of the demo (inputs, products, references) for the README; returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(2, 3, figsize=(13, 9), dpi=90)
    seg_rgba, seg_legend = class_picture(segmentation)
    change_rgba, change_legend = class_picture(change)
    with rasterio.open(samples.water_label) as src:
        label = src.read(1)
    reference = np.zeros((*label.shape, 4))
    reference[label == 1] = (31 / 255, 120 / 255, 230 / 255, 1)
    reference[label == 0] = (0.85, 0.85, 0.85, 1)
    panels = [
        (true_colour(samples.sentinel2, (4, 3, 2)), "Sentinel-2 L1C (Sen1Floods11, Spain)", None),
        (seg_rgba, "rsneo segmentation, typed classes", seg_legend),
        (reference, "hand-labelled water (reference)", [("water", (31 / 255, 120 / 255, 230 / 255))]),
        (true_colour(samples.landsat_before, (3, 2, 1)), "Landsat-7, Taizhou, 2000-03-17", None),
        (true_colour(samples.landsat_after, (3, 2, 1)), "Landsat-7, Taizhou, 2003-02-06", None),
        (change_rgba, "rsneo change map" + (UNVERIFIED if change_unverified else ""), change_legend),
    ]
    for ax, (image, title, legend) in zip(axes.ravel(), panels, strict=True):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(title, fontsize=11)
        ax.set_axis_off()
        if legend:
            handles = [Patch(facecolor=c, edgecolor="k", label=n) for n, c in legend]
            ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.85)
    fig.suptitle(f"rsneo demo - {model_note}", fontsize=13, color="red" if warn else "black")
    printable = "".join(ch if ch.isprintable() else "?" for ch in answer)
    lines = textwrap.wrap(f"A: {printable}", 150, max_lines=3, placeholder=" ...")  # whole words, never cut
    fig.text(0.5, 0.015, "\n".join([f"Q: {question}", *lines]), ha="center", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95), h_pad=2.5)
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


@dataclass
class DemoResult:
    """Where the demo wrote everything, and what the model said."""

    out: Path
    model_note: str
    trained: bool
    segmentation: dict[str, Path]  # cog, gpkg, qml, qgz
    areas: dict[str, float]
    area_unit: str
    change: dict[str, Path]  # cog, report, ...
    changed_share: float  # share of the pair's pixels mapped as changed
    question: str
    answer: str
    overview: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # inputs outside the imagery the model was trained on (rsneo.heads.domain)


def demo_system(model: Path | None = None):
    """(System, trained, note): the given model folder, else the bundled one, else a tiny random model."""
    folder = model if model is not None else BUNDLED_MODEL
    if model is not None or (folder / "config.json").is_file():
        system = load_system(folder)
        name = system.config.name
        where = "the bundled model, see docs/model_card.md" if model is None else str(folder)
        return system, True, f"model '{name}' ({where})"
    system = random_system(texts=[f"{c}. {DEMO_QUESTION}" for c in DEMO_CLASSES], preset="tiny")
    return system, False, "RANDOM UNTRAINED MODEL: no weights in rsneo/assets/model, outputs are meaningless"


def run_demo(
    out: Path,
    model: Path | None = None,
    window: int = 256,
    show_progress: bool = False,
    samples: DemoSamples | None = None,
    classes: tuple[str, ...] = DEMO_CLASSES,
    question: str = DEMO_QUESTION,
) -> DemoResult:
    """Run the three products on the bundled samples into `out`, then draw `out/overview.png`."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    system, trained, note = demo_system(model)
    token = system.model.config.token_size  # pixels per image token side (32 for NEO)
    if window < 2 * token or window % token:
        expected = f"a multiple of {token} pixels, at least {2 * token}"
        raise InputError(f"--window: expected {expected}, got {window}")
    out = check_writable(Path(out))
    samples = samples or bundled_samples()
    plan = WindowPlan(size=window, overlap=min(token, window // 4))
    if not trained:
        _warn(note)
    seconds["load"] = time.perf_counter() - start

    start = time.perf_counter()
    request = SegmentRequest(
        raster=samples.sentinel2, classes=list(classes), out=out / "segmentation", plan=plan,
        show_progress=show_progress,
    )  # fmt: skip
    seg = segment_raster(system, request)
    seconds["segmentation"] = time.perf_counter() - start

    start = time.perf_counter()
    pair = [samples.landsat_before, samples.landsat_after]
    change = detect_change(
        system, ChangeRequest(rasters=pair, out=out / "change", plan=plan, show_progress=show_progress)
    )
    seconds["change"] = time.perf_counter() - start

    start = time.perf_counter()
    answer = ask(system, AskRequest(rasters=[samples.sentinel2], question=question, max_side=256)).text
    atomic.write_text(out / "answer.txt", f"Q: {question}\nA: {answer}\n")
    seconds["question"] = time.perf_counter() - start

    result = DemoResult(
        out=out,
        model_note=note,
        trained=trained,
        segmentation={"cog": seg.cog, "gpkg": seg.gpkg, "qml": seg.qml, "qgis project": seg.qgz},
        areas=seg.areas,
        area_unit=seg.area_unit,
        change={"cog": change.cog, "gpkg": change.gpkg, "report": change.report, "qgis project": change.qgz},
        changed_share=change.changed_area / max(change.compared_area, 1e-12),
        question=question,
        answer=answer,
        seconds=seconds,
        notes=seg.notes + change.notes,
    )
    result.overview = overview_figure(
        out / "overview.png", samples, seg.cog, change.cog, question, answer, note, warn=not trained,
        change_unverified=bool(change.notes),
    )  # fmt: skip
    return result


def _warn(text: str) -> None:
    from rich.console import Console
    from rich.panel import Panel

    Console(stderr=True).print(Panel(text, title="rsneo demo", style="bold red"))


def print_summary(result: DemoResult) -> None:
    """Tell the user what was made and where (the CLI's output)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]rsneo demo[/] with {result.model_note}")
    table = Table("product", "file")
    table.columns[1].overflow = "fold"
    for name, path in result.segmentation.items():
        table.add_row(f"segmentation {name}", str(path))
    for name, path in result.change.items():
        table.add_row(f"change {name}", str(path))
    table.add_row("answer", str(result.out / "answer.txt"))
    if result.overview:
        table.add_row("overview picture", str(result.overview))
    console.print(table)
    areas = ", ".join(f"{k} {v:,.1f} {result.area_unit}" for k, v in result.areas.items())
    console.print(f"Segmentation of the Sentinel-2 scene: {areas}")
    console.print(f"Changed share of the Landsat pair: {100 * result.changed_share:.1f} %")
    for note in result.notes:
        console.print(f"[yellow]Outside the model's training data:[/] {note}.", highlight=False)
    console.print(f"Q: {result.question}\nA: {result.answer or '(no answer)'}")
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    console.print(f"Took {timing}.")
    if not result.trained:
        _warn(result.model_note)
