"""`rsneo ask`: one question over one raster or a time series of rasters, answered from the model's maps.

The answer is grounded (`rsneo.predict.answers`): shares, areas and changed shares are read from the same
segmentation and change maps `rsneo segment` and `rsneo change` write (the engine's products,
`rsneo.predict.maps`), and questions the model cannot answer (a change question over one date, an untrained
class, another kind of question) are answered with what it cannot say, never with a memorised template.
"""

from __future__ import annotations

from rsneo.data.frames import band_layout
from rsneo.errors import InputError
from rsneo.heads.system import System
from rsneo.predict.answers import Answer, grounded_answer
from rsneo.predict.requests import AskRequest


def ask(system: System, request: AskRequest) -> Answer:
    """The grounded answer to `request.question` about `request.rasters` (dates in order), with its kind and
    measured value.

    Maps are computed on each raster, or on an overview of at most `max_side` pixels a side when larger
    (new buildings: always at full resolution, `pixel_size` metres per pixel when there is no georeference).
    """
    if not request.question.strip():
        raise InputError("ask: expected a question, got an empty string")
    if not request.rasters:
        raise InputError("ask: expected one or more rasters before the question")
    dates = []
    for raster in request.rasters:
        if not raster.exists():
            raise InputError(f"{raster}: file not found")
        dates.append(band_layout(raster, request.sensor, request.band_list).date)
    return grounded_answer(system, request, dates)
