"""`rsneo ask`: one question over one raster or a time series of rasters, answered from the model's maps.

The answer is grounded (`rsneo.predict.answers`): shares, areas and changed shares are read from the same
segmentation and change maps `rsneo segment` and `rsneo change` write, and questions the model cannot answer
(a change question over one date, an untrained class, another kind of question) are answered with what it
cannot say, never with a memorised template.
"""

from __future__ import annotations

from pathlib import Path

from rsneo.data.frames import band_layout
from rsneo.errors import InputError
from rsneo.heads.system import System
from rsneo.predict.answers import Answer, grounded_answer


def ask(
    system: System,
    rasters: list[Path],
    question: str,
    *,
    sensor: str | None = None,
    bands: list[str] | None = None,
    max_side: int = 512,
    pixel_size: float | None = None,
) -> Answer:
    """The grounded answer to `question` about `rasters` (dates in order), with its kind and measured value.

    Maps are computed on each raster, or on an overview of at most `max_side` pixels a side when larger
    (new buildings: always at full resolution, `pixel_size` metres per pixel when there is no georeference).
    """
    if not question.strip():
        raise InputError("ask: expected a question, got an empty string")
    if not rasters:
        raise InputError("ask: expected one or more rasters before the question")
    rasters = [Path(r) for r in rasters]
    dates = []
    for raster in rasters:
        if not raster.exists():
            raise InputError(f"{raster}: file not found")
        dates.append(band_layout(raster, sensor, bands).date)
    return grounded_answer(
        system, rasters, question, dates, sensor=sensor, bands=bands, max_side=max_side, pixel_size=pixel_size
    )
