"""`rsneo ask`: one question over one raster or a time series of rasters, answered by the language head."""

from __future__ import annotations

from pathlib import Path

from rsneo.errors import InputError
from rsneo.heads.generation import generate_answer
from rsneo.heads.system import System
from rsneo.io.cog import open_raster
from rsneo.predict.bands import band_layout, model_band_groups, overview_size, read_overview


def ask_rasters(
    system: System,
    rasters: list[Path],
    question: str,
    *,
    sensor: str | None = None,
    bands: list[str] | None = None,
    max_side: int = 512,
    max_new_tokens: int = 64,
) -> str:
    """The answer to `question` about `rasters` (dates in order), each read whole at <= `max_side` px."""
    if not question.strip():
        raise InputError("ask: expected a question, got an empty string")
    if not rasters:
        raise InputError("ask: expected one or more rasters before the question")
    frames, dates = [], []
    for raster in map(Path, rasters):
        if not raster.exists():
            raise InputError(f"{raster}: file not found")
        layout = band_layout(raster, sensor, bands, model_band_groups(system.config))
        with open_raster(raster) as src:
            pixels, valid = read_overview(src, overview_size(src.width, src.height, max_side))
        frames.append(layout.images(pixels, valid))
        dates.append(layout.date)
    dates = dates if len(frames) > 1 else None
    return generate_answer(system.model, system.tokenizer, frames, question, dates, max_new_tokens)
