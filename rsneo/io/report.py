"""The HTML change report: maps embedded as PNG data URIs, the measured numbers stated plainly, and a summary
sentence about the change written from those numbers (`change_summary`).

Rendered from the jinja2 template `rsneo/predict/templates/change_report.html.j2` (autoescaped: generated text
and file names cannot inject markup). One self-contained file, written to a hidden name and renamed.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rsneo import atomic
from rsneo.io.areas import format_area
from rsneo.version import __version__

TEMPLATES = Path(__file__).resolve().parents[1] / "predict" / "templates"


def png_data_uri(rgb: np.ndarray) -> str:
    """(H, W), (H, W, 3) or (H, W, 4) uint8 -> "data:image/png;base64,..."."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def stretch_rgb(pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(3 or 1, H, W) values -> (H, W, 3) uint8 with a 2-98 % stretch per band; invalid pixels black."""
    bands = pixels if pixels.shape[0] >= 3 else np.repeat(pixels[:1], 3, axis=0)
    out = np.zeros((*bands.shape[1:], 3), np.uint8)
    for i in range(3):
        values = bands[i][valid]
        if values.size == 0:
            continue
        lo, hi = np.percentile(values, [2, 98])
        scaled = (bands[i] - lo) / max(hi - lo, 1e-6)
        out[..., i] = np.clip(scaled * 255, 0, 255).astype(np.uint8)
    out[~valid] = 0
    return out


def change_summary(
    changed: float,
    compared: float,
    unit: str,
    dates: list[str | None],
    rows: list[tuple[str, float]] = (),
    subject: str | None = None,
) -> str:
    """One or two sentences about the change, from the measured map (never a generated template).

    `rows` are (class "A → B", area) of the from-to table, when classes were given; the largest real
    transition (A differs from B) is named. `subject` names what a one-kind map found ("new buildings").
    """
    share = 100 * changed / max(compared, 1e-12)

    amount = format_area(changed, unit)
    when = f"between {dates[0]} and {dates[-1]}" if dates and dates[0] and dates[-1] else "between the dates"
    if changed <= 0:
        return f"The change map shows no {subject or 'change'} {when}."
    if subject:
        return f"{subject.capitalize()} cover about {share:.1f}% of the compared area, {when} ({amount})."
    text = f"About {share:.1f}% of the compared area changed {when} ({amount})."
    moves = [(name, area) for name, area in rows if len(set(name.split(" → "))) == 2]
    if moves:
        name, area = max(moves, key=lambda r: r[1])
        text += f" The largest change is {name} ({100 * area / max(compared, 1e-12):.1f}% of the area)."
    return text


@dataclass
class ReportImage:
    caption: str
    src: str  # a data URI


@dataclass
class ChangeReport:
    title: str
    inputs: list[str]
    model: str
    images: list[ReportImage]
    measured: list[str]  # plain sentences with the measured numbers
    generated: str
    table_header: list[str]
    table_rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (class name, "#rrggbb") shown in the map


def render_report(report: ChangeReport) -> str:
    """The report as HTML text."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    return env.get_template("change_report.html.j2").render(version=__version__, **report.__dict__)


def write_report(path: Path, report: ChangeReport) -> Path:
    """Write the report to `path` (hidden temporary name, then rename)."""
    path = Path(path)
    atomic.write_text(path, render_report(report))
    return path
