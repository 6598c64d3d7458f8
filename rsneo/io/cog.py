"""Writing class maps as Cloud-Optimised GeoTIFFs, block by block, complete or absent (reading any raster
goes through `rsneo.io.dataset`).

A `CogBlockWriter` streams blocks into a hidden tiled GeoTIFF in the destination folder (so memory stays flat
and an interrupted run can reopen it), then `finish()` turns it into a COG with rio-cogeo (overviews, class
names as band metadata, a colour table) and renames it into place. Until the rename nothing carries the final
name.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from rsneo import atomic
from rsneo.atomic import hidden_path
from rsneo.errors import InputError
from rsneo.io.dataset import GDAL_CACHE_MB, open_raster
from rsneo.io.palette import class_colors

NODATA_CLASS = 255  # class value for pixels with no valid input ("none of these" gets its own class)
# GDAL's block cache, in bytes. rasterio hands an integer GDAL_CACHEMAX straight to GDALSetCacheMax64, which
# counts bytes: a bare 64 meant 64 bytes (cache off) and made every re-read of a block hit the disk.
GDAL_CACHE_BYTES = GDAL_CACHE_MB * 1024**2
GDAL_ENV = {
    "GDAL_CACHEMAX": GDAL_CACHE_BYTES,
    "GDAL_TIFF_INTERNAL_MASK": True,
}  # the only GDAL settings rsneo makes; applied through `gdal_env()`


def gdal_env() -> rasterio.Env:
    """The one place rsneo's GDAL settings are applied (a rasterio.Env of `GDAL_ENV`)."""
    return rasterio.Env(**GDAL_ENV)


@dataclass(frozen=True)
class ClassLegend:
    """Class values 0..n-1 with names and RGB colours, shared by the COG, GeoPackage, QML and report."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    untrained: tuple[str, ...] = ()  # names the model was never taught: labelled so in legends and styles
    notes: tuple[str, ...] = ()  # caveats on the whole map (input outside the training data), in its tags
    read_as: tuple[tuple[str, str], ...] = ()  # (typed name, "read as land, broader"): what the model read

    @classmethod
    def from_names(
        cls,
        names: list[str] | tuple[str, ...],
        untrained: tuple[str, ...] = (),
        notes: tuple[str, ...] = (),
        read_as: dict[str, str] | None = None,
    ) -> ClassLegend:
        """Colours by meaning, kept apart in CIELAB (`rsneo.io.palette.class_colors`)."""
        names = tuple(n.strip() for n in names)
        if not names or any(not n for n in names):
            raise InputError(f"class list: expected one or more non-empty class names, got {list(names)!r}")
        if len(names) >= NODATA_CLASS:
            raise InputError(f"class list: expected at most {NODATA_CLASS - 1} classes, got {len(names)}")
        readings = tuple((n, r) for n, r in (read_as or {}).items() if n in names)
        return cls(names, class_colors(names), tuple(untrained), tuple(notes), readings)

    def label(self, index: int) -> str:
        """The name as shown in a legend, with what the model read it as and whether it was ever taught:
        "cropland (read as land, broader; untrained)", "open water (read as water)", "forest (untrained)"."""
        name = self.names[index]
        marks = [r for n, r in self.read_as if n == name] + (["untrained"] if name in self.untrained else [])
        return f"{name} ({'; '.join(marks)})" if marks else name

    def hex(self, index: int) -> str:
        r, g, b = self.colors[index]
        return f"#{r:02x}{g:02x}{b:02x}"

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """GDAL colour table: classes opaque, the nodata value transparent."""
        table = {i: (*c, 255) for i, c in enumerate(self.colors)}
        table[NODATA_CLASS] = (0, 0, 0, 0)
        return table


def _open_for_writing(path: Path, mode: str, **profile) -> rasterio.io.DatasetWriter:
    """rasterio.open for writing ("w") or updating ("r+") a partial file; reading goes through
    `rsneo.io.dataset.open_raster`. Pixel-unit class maps have no CRS on purpose: no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        try:
            return rasterio.open(path, mode, **profile)
        except rasterio.errors.RasterioIOError as exc:
            raise InputError(f"{path}: cannot open it as a raster ({exc})") from None


def check_writable(folder: Path) -> Path:
    """Create `folder` if needed and prove we can write there, before any long work starts."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".rsneo-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(
            f"output folder {folder}: expected a folder rsneo can write to, got {exc.strerror or exc}"
        ) from None
    return folder


def pixel_units_transform(transform: rasterio.Affine) -> rasterio.Affine:
    """Where QGIS shows an ungeoreferenced image: column x, row -y (y 0 to -height), so outputs of a PNG
    written with this transform land exactly on it rather than flipped beside it."""
    t = transform
    return rasterio.Affine(t.a, t.b, t.c, t.d, -t.e, -t.f) if t.e > 0 else t


class CogBlockWriter:
    """Stream blocks of one uint8 band into a COG at `path`.

    With a `legend`, a class map: values 0..n-1, `NODATA_CLASS` for no data, a colour table, the class names
    as band metadata, overviews by mode. Without one, a plain band (e.g. confidence in percent 0..100, nodata
    255) with averaged overviews. With `resume=True` an existing partial file from an interrupted run is
    reopened instead of recreated.
    """

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        crs: rasterio.crs.CRS | None,
        transform: rasterio.Affine,
        legend: ClassLegend | None,
        description: str = "class",
        resume: bool = False,
        blocksize: int = 256,
    ) -> None:
        self.path = Path(path)
        self.partial = hidden_path(self.path, "partial.tif")
        if crs is None:
            transform = pixel_units_transform(transform)
        self.legend = legend
        if resume and self.partial.exists():
            with gdal_env():
                self._dst = _open_for_writing(self.partial, "r+")
            return
        profile = dict(
            driver="GTiff",
            width=width,
            height=height,
            count=1,
            dtype="uint8",
            crs=crs,
            transform=transform,
            nodata=NODATA_CLASS,
            tiled=True,
            blockxsize=blocksize,
            blockysize=blocksize,
            compress="deflate",
        )
        with gdal_env():
            self._dst = _open_for_writing(self.partial, "w", **profile)
        self._dst.set_band_description(1, description)
        if legend is None:
            return
        self._dst.write_colormap(1, legend.colormap())
        names = json.dumps(list(legend.names), ensure_ascii=False)
        self._dst.update_tags(class_names=names, rsneo_product="class map")
        if legend.notes:
            self._dst.update_tags(rsneo_notes=json.dumps(list(legend.notes), ensure_ascii=False))
        self._dst.update_tags(
            1,
            class_names=names,
            class_colors=json.dumps([legend.hex(i) for i in range(len(legend.names))]),
            untrained_classes=json.dumps(list(legend.untrained), ensure_ascii=False),
            class_labels=json.dumps([legend.label(i) for i in range(len(legend.names))], ensure_ascii=False),
            read_as=json.dumps(dict(legend.read_as), ensure_ascii=False),
            **{f"class_{i}": name for i, name in enumerate(legend.names)},
        )

    def write(self, window: Window, values: np.ndarray) -> None:
        """Write one block of (rows, cols) uint8 values."""
        with gdal_env():
            self._dst.write(values.astype(np.uint8, copy=False), 1, window=window)

    def flush(self) -> None:
        """Make the blocks written so far durable, so a resumed run can trust them."""
        with gdal_env():
            self._dst.close()
            self._dst = _open_for_writing(self.partial, "r+")

    def finish(self) -> Path:
        """Convert to a COG (deflate, tiled, with overviews), rename into place, return the path."""
        from rio_cogeo.cogeo import cog_translate
        from rio_cogeo.profiles import cog_profiles

        self.close()
        staging = hidden_path(self.path, "cog.tif")
        try:
            profile = cog_profiles.get("deflate")
            profile.update(blockxsize=256, blockysize=256)
            with warnings.catch_warnings():  # pixel-unit class maps have no CRS on purpose
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                cog_translate(
                    str(self.partial),
                    str(staging),
                    profile,
                    overview_resampling="mode" if self.legend is not None else "average",
                    overview_level=None,
                    in_memory=False,
                    quiet=True,
                    config=GDAL_ENV,
                    use_cog_driver=False,
                    forward_band_tags=True,
                )
            atomic.replace(staging, self.path)
        finally:
            staging.unlink(missing_ok=True)
        self.partial.unlink(missing_ok=True)
        return self.path

    def abort(self) -> None:
        """Close and remove the partial file (used when an error makes the output meaningless)."""
        self.close()
        self.partial.unlink(missing_ok=True)

    def close(self) -> None:
        """Close without finishing: the partial file stays for a resumed run."""
        if not self._dst.closed:
            with gdal_env():
                self._dst.close()


def read_legend(path: Path) -> ClassLegend:
    """Class names and colours back from a COG written by `CogBlockWriter`."""
    with open_raster(path) as src:
        tags = src.tags(1)
        names = json.loads(tags.get("class_names", "[]"))
        untrained = json.loads(tags.get("untrained_classes", "[]"))
        read_as = json.loads(tags.get("read_as", "{}"))
        notes = json.loads(src.tags().get("rsneo_notes", "[]"))
        cmap = src.colormap(1)
    colors = tuple(tuple(cmap[i][:3]) for i in range(len(names)))
    return ClassLegend(tuple(names), colors, tuple(untrained), tuple(notes), tuple(read_as.items()))
