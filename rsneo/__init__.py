"""rsneo: native vision-language models (NEO) for Earth observation.

The Python API (`rsneo.api`) is re-exported here and imported on first use, so `import rsneo` and
`rsneo --help` stay light:

    import rsneo
    m = rsneo.load()                                   # the bundled model, or rsneo.load("models/mine")
    rsneo.samples().sentinel2                          # the bundled sample imagery
    seg = m.segment("scene.tif", classes="water, land")
    seg.classes, seg.polygons, seg.areas               # xarray map with confidence, GeoDataFrame, hectares
    m.change("before.tif", "after.tif").summary
    m.ask("scene.tif", "How much of the image is water?").text
    rsneo.learn("scene.tif", "fields.gpkg", "crop", "models/crops")
    run = rsneo.fit(["experiment=smoke", "out_dir=runs/smoke"])   # train as `rsneo train` does
    rsneo.export(run / "checkpoints" / "last.ckpt", "models/mine")

Mistakes in the input raise `rsneo.InputError`; rsneo's warnings are `rsneo.RSNeoWarning`s.
"""

from __future__ import annotations

from typing import Any

from rsneo.errors import InputError, RSNeoWarning
from rsneo.version import __version__

_API = {
    "Change", "Model", "Segmentation", "class_picture", "export", "fit", "learn", "load", "samples",
    "true_colour",
}  # fmt: skip
__all__ = [
    "Change", "InputError", "Model", "RSNeoWarning", "Segmentation", "__version__", "class_picture", "export",
    "fit", "learn", "load", "samples", "true_colour",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    """`rsneo.load` and the rest of the API, imported on first use (PEP 562)."""
    if name in _API:
        from rsneo import api  # on use: the API loads torch, `import rsneo` must not

        return getattr(api, name)
    raise AttributeError(f"module 'rsneo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
