"""The opened-dataset layer under the readers: one cached opener and the description of one acquisition.

`read` (rasters, folders) and `stac` (STAC items) both build a `RasterSource` from datasets opened here, so
neither needs the other and each file's header is read once per process.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from rsneo.errors import InputError
from rsneo.io.grid import Grid
from rsneo.sensors import Band, Sensor


@dataclass(frozen=True)
class BandFile:
    """Where one band lives: a file and its 1-based band index."""

    path: str
    index: int


@dataclass
class RasterSource:
    """One acquisition: which sensor bands it holds, where each is stored, its date and its working grid.

    `grid` is the finest band's grid (mixed-resolution folders are resampled onto it).
    """

    path: str
    sensor: Sensor
    bands: list[Band]
    files: list[BandFile]
    grid: Grid
    date: np.datetime64 | None
    dtype: str
    nodata: float | None

    @property
    def georeferenced(self) -> bool:
        return self.grid.crs is not None


_HANDLES: dict[tuple[int, str], rasterio.DatasetReader] = {}
_HEADERS: dict[tuple[int, str], DatasetHeader] = {}
_STAMPS: dict[tuple[int, str], tuple[int, int] | None] = {}  # (size, mtime in ns) of the file when opened
MAX_OPEN = 256
# GDAL's block cache in MB. GDAL's own default is 5 % of the machine's memory, and every block a read
# touched stays in it: a whole-raster check before prediction kept a 4096^2 13-band input (436 MB) resident
# for the run. Set before GDAL first sizes its cache (a GDAL_CACHEMAX the user set wins);
# `rsneo.io.cog.gdal_env` applies the same figure. Two rows of 256-px windows of a 4096-wide 13-band raster
# are about 60 MB.
GDAL_CACHE_MB = 128
os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHE_MB))
# dtypes float32 holds exactly: GDAL converts them while reading, and nodata is compared in float32
_EXACT_IN_FLOAT32 = {"uint8", "int8", "uint16", "int16", "float32"}
MASK_BAND = "mask"  # `band_validity`: GDAL's first mask band says (a per-dataset mask, an alpha band)
DATASET_MASK = "dataset"  # `band_validity`: band masks of another kind, only GDAL's dataset mask says


@dataclass(frozen=True)
class DatasetHeader:
    """What reading a window needs from a dataset's header, read once per open dataset, not once per chip.

    `nodata[i]` is band i+1's nodata value in the dtype pixels are compared in (None: the band has none, or
    a value the dtype cannot hold); `mask_band[i]` says its validity needs GDAL's mask band (an internal
    mask, an alpha band) instead of a nodata value.
    """

    grid: Grid
    dtype: str
    nodata: tuple[float | None, ...]
    mask_band: tuple[bool, ...]

    @property
    def float_read(self) -> bool:
        """Whether GDAL may convert to float32 while reading (no value changes, nodata still recognisable)."""
        return self.dtype in _EXACT_IN_FLOAT32

    @functools.cached_property
    def one_nodata(self) -> float | None:
        """The nodata value when all bands share one and none needs a mask band (usual), else None."""
        if any(self.mask_band) or len(set(self.nodata)) != 1:
            return None
        return self.nodata[0]


@contextmanager
def gdal_errors(path: str, action: str = "read") -> Iterator[None]:
    """Turn GDAL failures on `path` into an InputError naming the file (truncated, corrupt, not a raster)."""
    try:
        yield
    except RasterioError as exc:
        raise InputError(
            f"{path}: cannot {action} it as a raster; the file may be truncated or corrupt "
            f"(GDAL: {gdal_message(exc)})"
        ) from None


def gdal_message(exc: BaseException) -> str:
    """GDAL's own words: rasterio's "Read failed. See previous exception" points at a chained error."""
    messages = []
    while exc is not None and len(messages) < 4:
        messages.append(str(exc).strip())
        exc = exc.__cause__ or exc.__context__
    useful = [m for m in messages if m and "See previous exception" not in m]
    return "; ".join(dict.fromkeys(useful)) or messages[0]


def _open(path: str) -> rasterio.DatasetReader:
    """Open `path` for reading with rsneo's checks: a missing, empty or unreadable file, or one cut off before
    its last block, is an InputError naming it; pixel-unit images open without GDAL's warning."""
    check_raster_file(Path(path))
    with gdal_errors(path, "open"), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            handle = rasterio.open(path)
        except RasterioError as exc:
            if "not recognized as being in a supported file format" in str(exc):
                raise InputError(
                    f"{path}: not a raster format GDAL reads (GeoTIFF/COG, ENVI, JPEG2000, PNG, JPEG, VRT); "
                    "the file may also be corrupt"
                ) from None
            raise
    try:
        with gdal_errors(path, "read"):
            _probe_last_block(handle)
    except InputError:
        handle.close()
        raise
    return handle


def open_dataset(path: str) -> rasterio.DatasetReader:
    """An open dataset for `path`, cached per process (workers each open their own; headers read once).

    At most `MAX_OPEN` stay open; the least recently used is closed first (archives have many files).
    """
    key = (os.getpid(), path)
    stamp = _file_stamp(path)
    if key in _HANDLES and _STAMPS.get(key) == stamp:
        _HANDLES[key] = _HANDLES.pop(key)  # most recently used last
        return _HANDLES[key]
    if key in _HANDLES:  # the file was rewritten since it was opened: its cached header and pixels are stale
        _forget(key)
    handle = _open(path)
    while len(_HANDLES) >= MAX_OPEN:
        _forget(next(iter(_HANDLES)))
    _HANDLES[key] = handle
    _STAMPS[key] = stamp
    return handle


@contextmanager
def open_raster(path: str | Path) -> Iterator[rasterio.DatasetReader]:
    """A raster file to read all of, closed on exit: opened with `open_dataset`'s checks but not cached, so a
    file rsneo rewrites (its own products, partial files) reads back fresh. Band folders and STAC items:
    `rsneo.io.read.open_input`."""
    with _open(str(path)) as handle:
        yield handle


def _file_stamp(path: str) -> tuple[int, int] | None:
    """(size, mtime in ns) of a local file; None where there is nothing to stat (GDAL virtual paths)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _forget(key: tuple[int, str]) -> None:
    _HANDLES.pop(key).close()
    _HEADERS.pop(key, None)
    _STAMPS.pop(key, None)


def dataset_header(path: str) -> DatasetHeader:
    """The header of `path`'s cached dataset (grid, nodata per band), computed on first use."""
    key = (os.getpid(), path)
    src = open_dataset(path)  # also keeps the two caches in step: evicting a handle drops its header
    header = _HEADERS.get(key)
    if header is None:
        validity = band_validity(src)
        nodata = tuple(None if isinstance(v, str) else v for v in validity)
        mask_band = tuple(isinstance(v, str) for v in validity)
        header = DatasetHeader(dataset_grid(src), np.dtype(src.dtypes[0]).name, nodata, mask_band)
        _HEADERS[key] = header
    return header


def data_bands(src: rasterio.io.DatasetReaderBase) -> list[int]:
    """1-based indexes of a dataset's data bands, for every reader. A band tagged alpha is a mask, not data,
    when GDAL masks the other bands with it (an RGBA PNG, a WarpedVRT's added alpha); an alpha tag GDAL does
    not use as a mask stays data (GDAL tags the 4th band of an RGB-photometric GeoTIFF alpha by default, so a
    NAIP crop's near infrared band written with its source's nodata would otherwise be lost)."""
    try:
        interp = src.colorinterp
    except CPLE_BaseError:
        # rasterio reports GDAL's last error after this call when the value is non-zero: one left behind by an
        # earlier failed read (a truncated file refused before) surfaces here; reporting it cleared it
        interp = src.colorinterp
    flags = src.mask_flag_enums
    masked_by_alpha = any(
        MaskFlags.alpha in f for c, f in zip(interp, flags, strict=True) if c != ColorInterp.alpha
    )
    return [i + 1 for i, c in enumerate(interp) if not (c == ColorInterp.alpha and masked_by_alpha)]


def band_validity(src: rasterio.io.DatasetReaderBase) -> tuple[float | str | None, ...]:
    """How each band tells its valid pixels, read once from GDAL's mask flags for every reader (the headers
    here, the sliding window's `rsneo.io.windows`): None (all valid, also for a nodata value no pixel can
    hold), the nodata value (as the band's pixels hold it, in the dtype reads compare in), `MASK_BAND` (a
    per-dataset mask or alpha band: GDAL's first mask band) or `DATASET_MASK` (only GDAL's dataset mask)."""
    dtype = np.dtype(src.dtypes[0])
    compare = np.dtype(np.float32) if dtype.name in _EXACT_IN_FLOAT32 else dtype
    validity: list[float | str | None] = []
    for flags, value in zip(src.mask_flag_enums, src.nodatavals, strict=True):
        if MaskFlags.per_dataset in flags or MaskFlags.alpha in flags:
            validity.append(MASK_BAND)
        elif MaskFlags.all_valid in flags:
            validity.append(None)
        elif MaskFlags.nodata in flags and value is not None:
            validity.append(_nodata_as(value, dtype, compare))
        else:
            validity.append(DATASET_MASK)
    return tuple(validity)


def _nodata_as(value: float, stored: np.dtype, compare: np.dtype) -> float | None:
    """`value` as pixels of dtype `stored` hold it, in dtype `compare`; None when no pixel can hold it (out of
    the integer range). A fraction is cut to an integer, as GDAL's nodata mask cuts it (0.5 masks 0)."""
    if np.issubdtype(stored, np.integer):
        info = np.iinfo(stored)
        if not info.min <= value <= info.max:
            return None
    return compare.type(stored.type(value)).item()


def check_raster_file(path: Path) -> None:
    """Refuse, before GDAL sees it, a path that cannot be a raster: missing, empty, or an ENVI/ESRI header."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes); expected a raster")
    if path.suffix.lower() == ".hdr":
        stem = path.stem.lower()
        data = sorted(p for p in path.parent.iterdir() if p.stem.lower() == stem and p.is_file())
        data = [p for p in data if p.suffix.lower() != ".hdr"]
        hint = f"give its data file {data[0]} instead" if data else "give the data file next to it instead"
        raise InputError(f"{path}: is a raster header (ENVI .hdr), not the data; {hint}")


def _probe_last_block(src: rasterio.DatasetReader) -> None:
    """Decode the last block of the first and last band: a truncated file fails here, before any work starts.

    (Tiled and striped files store that block last, so a cut-off download cannot pass; this costs one block.)
    """
    block_h, block_w = src.block_shapes[0]
    window = Window(
        (src.width - 1) // block_w * block_w,
        (src.height - 1) // block_h * block_h,
        min(block_w, src.width - (src.width - 1) // block_w * block_w),
        min(block_h, src.height - (src.height - 1) // block_h * block_h),
    )
    src.read(sorted({1, src.count}), window=window)


def close_datasets() -> None:
    """Close every cached dataset of this process (tests, long-running servers)."""
    for key in [k for k in _HANDLES if k[0] == os.getpid()]:
        _forget(key)


def dataset_grid(src: rasterio.DatasetReader) -> Grid:
    """The grid of an open dataset; no CRS and an identity transform mean pixel units."""
    georef = src.crs is not None and not (src.transform == Affine.identity() and not src.gcps[0])
    return Grid(src.crs if georef else None, src.transform, src.width, src.height)
