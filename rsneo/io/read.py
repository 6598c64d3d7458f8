"""Open any raster GDAL reads (or a folder of one-band files) as a `RasterSource`, and read windows of it.

Reading uses rasterio directly: a window that lies on the file's own grid is a plain windowed `read`;
anything else (another resolution, a shifted or reprojected grid) is warped by GDAL straight into the
requested window, so only the source blocks under the window are decoded. Values stay in the sensor's
stored units, as float32 with NaN wherever the file says nodata (or has no data: outside its extent).
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
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.warp import reproject
from rasterio.windows import Window

from rsneo.errors import InputError, RSNeoWarning
from rsneo.io.detect import acquisition_date, assign_bands, detect_sensor, folder_band_name
from rsneo.io.grid import Grid
from rsneo.sensors import Band, Sensor

RASTER_SUFFIXES = {".tif", ".tiff", ".jp2", ".png", ".img", ".vrt", ".jpg", ".jpeg"}


class PixelUnitsWarning(RSNeoWarning):
    """The raster has no georeference; coordinates are pixel columns and rows."""


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
MAX_OPEN = 256
# dtypes float32 holds exactly: GDAL converts them while reading, and nodata is compared in float32
_EXACT_IN_FLOAT32 = {"uint8", "int8", "uint16", "int16", "float32"}


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


def open_dataset(path: str) -> rasterio.DatasetReader:
    """An open dataset for `path`, cached per process (workers each open their own; headers read once).

    At most `MAX_OPEN` stay open; the least recently used is closed first (archives have many files).
    """
    key = (os.getpid(), path)
    if key in _HANDLES:
        _HANDLES[key] = _HANDLES.pop(key)  # most recently used last
        return _HANDLES[key]
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
    while len(_HANDLES) >= MAX_OPEN:
        oldest = next(iter(_HANDLES))
        _HANDLES.pop(oldest).close()
        _HEADERS.pop(oldest, None)
    _HANDLES[key] = handle
    return handle


def dataset_header(path: str) -> DatasetHeader:
    """The header of `path`'s cached dataset (grid, nodata per band), computed on first use."""
    key = (os.getpid(), path)
    src = open_dataset(path)  # also keeps the two caches in step: evicting a handle drops its header
    header = _HEADERS.get(key)
    if header is None:
        dtype = np.dtype(src.dtypes[0])
        compare = np.dtype(np.float32) if dtype.name in _EXACT_IN_FLOAT32 else dtype
        nodata, mask_band = [], []
        for flags, value in zip(src.mask_flag_enums, src.nodatavals, strict=True):
            if MaskFlags.all_valid in flags:
                nodata.append(None)
                mask_band.append(False)
            elif MaskFlags.nodata in flags and value is not None:
                nodata.append(_nodata_as(value, dtype, compare))
                mask_band.append(False)
            else:  # per-dataset mask, alpha band, ...: only GDAL's mask band knows
                nodata.append(None)
                mask_band.append(True)
        header = DatasetHeader(dataset_grid(src), dtype.name, tuple(nodata), tuple(mask_band))
        _HEADERS[key] = header
    return header


def _nodata_as(value: float, stored: np.dtype, compare: np.dtype) -> float | None:
    """`value` as pixels of dtype `stored` hold it, in dtype `compare`; None when no pixel can hold it."""
    if np.issubdtype(stored, np.integer):
        info = np.iinfo(stored)
        if not (float(value).is_integer() and info.min <= value <= info.max):
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
        _HANDLES.pop(key).close()
        _HEADERS.pop(key, None)


def dataset_grid(src: rasterio.DatasetReader) -> Grid:
    """The grid of an open dataset; no CRS and an identity transform mean pixel units."""
    georef = src.crs is not None and not (src.transform == Affine.identity() and not src.gcps[0])
    return Grid(src.crs if georef else None, src.transform, src.width, src.height)


def _folder_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in RASTER_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: expected raster files (one band each) in this folder, found none")
    return files


def open_source(
    path: str | Path,
    sensor: str | Sensor | None = None,
    bands: list[str] | None = None,
) -> RasterSource:
    """Open a raster file, a folder of one-band files (BigEarthNet) or a STAC item JSON as one acquisition.

    The sensor comes from the metadata when it can, else from `sensor`; `bands` names the file's bands in
    file order when the metadata does not.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        from rsneo.io.stac import open_stac_item

        return open_stac_item(path, sensor=sensor, bands=bands)
    if path.is_dir():
        files = _folder_files(path)
        datasets = [open_dataset(str(f)) for f in files]
        names = [folder_band_name(f) for f in files]
        sensor_obj = detect_sensor(path, datasets[0], names, sensor, band_count=len(files))
        band_objs = assign_bands(path, sensor_obj, names, bands, None, len(files))
        band_files = [BandFile(str(f), 1) for f in files]
        if bands is None:  # files sort by name; put the bands in the sensor's order
            order = sorted(range(len(files)), key=lambda i: sensor_obj.band_names.index(band_objs[i].name))
            band_objs, band_files = [band_objs[i] for i in order], [band_files[i] for i in order]
        finest = min(range(len(files)), key=lambda i: datasets[i].res[0])
        first = datasets[finest]
    else:
        first = open_dataset(str(path))
        descriptions = [d or "" for d in first.descriptions]
        wavelengths = _envi_wavelengths(first)
        sensor_obj = detect_sensor(path, first, descriptions, sensor, band_count=first.count)
        band_objs = assign_bands(path, sensor_obj, descriptions, bands, wavelengths, first.count)
        band_files = [BandFile(str(path), i + 1) for i in range(first.count)]
    grid = dataset_grid(first)
    if grid.crs is None:
        warnings.warn(
            f"{path} has no georeference: using pixel units (x, y are column and row)",
            PixelUnitsWarning,
            stacklevel=2,
        )
    return RasterSource(
        path=str(path),
        sensor=sensor_obj,
        bands=band_objs,
        files=band_files,
        grid=grid,
        date=acquisition_date(path, first),
        dtype=first.dtypes[0],
        nodata=first.nodata,
    )


def _envi_wavelengths(src: rasterio.DatasetReader) -> list[float] | None:
    """Per-band central wavelengths (micrometres) where the format records them (ENVI headers)."""
    values = [src.tags(i + 1).get("wavelength") for i in range(src.count)]
    if not all(values):
        return None
    unit = (src.tags().get("wavelength_units") or "micrometers").lower()
    scale = 1e-3 if unit.startswith("nano") else 1.0
    return [float(v) * scale for v in values]


_GDAL_TYPES = {
    "uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
    "int32": "Int32", "float32": "Float32", "float64": "Float64",
}  # fmt: skip


def source_vrt(source: RasterSource) -> str:
    """A GDAL VRT (XML text, which rasterio.open takes as a path) stacking the bands of `source` on its grid.

    So a band folder (BigEarthNet: 10, 20 and 60 m files) or a STAC item opens like one multi-band raster in
    code that reads windows with rasterio; coarser bands are resampled bilinearly, as `read_band` does.
    """
    from xml.sax.saxutils import escape

    grid = source.grid
    if grid.crs is None:
        raise InputError(f"{source.path}: a band folder or STAC item needs georeferenced bands; found none")
    gdal_type = _GDAL_TYPES.get(source.dtype)
    if gdal_type is None:
        raise InputError(f"{source.path}: bands of type {source.dtype} cannot be stacked; expected numbers")
    bands = []
    for i, (band, band_file) in enumerate(zip(source.bands, source.files, strict=True)):
        src = open_dataset(band_file.path)
        if src.crs != grid.crs:
            raise InputError(
                f"{band_file.path}: its CRS differs from the other bands of {source.path}; expected one CRS"
            )
        col, row = ~grid.transform @ (src.transform.c, src.transform.f)
        width = src.width * src.transform.a / grid.transform.a
        height = src.height * src.transform.e / grid.transform.e
        nodata = "" if src.nodata is None else f"<NoDataValue>{src.nodata!r}</NoDataValue>"
        file = escape(str(Path(band_file.path).resolve()))
        source_nodata = "" if src.nodata is None else f"<NODATA>{src.nodata!r}</NODATA>"
        bands.append(
            f'<VRTRasterBand dataType="{gdal_type}" band="{i + 1}"><Description>{escape(band.name)}'
            f'</Description>{nodata}<ComplexSource resampling="bilinear">'
            f'<SourceFilename relativeToVRT="0">{file}</SourceFilename>'
            f"<SourceBand>{band_file.index}</SourceBand>"
            f'<SrcRect xOff="0" yOff="0" xSize="{src.width}" ySize="{src.height}"/>'
            f'<DstRect xOff="{col!r}" yOff="{row!r}" xSize="{width!r}" ySize="{height!r}"/>'
            f"{source_nodata}</ComplexSource></VRTRasterBand>"
        )
    transform = ", ".join(repr(v) for v in grid.transform.to_gdal())
    return (
        f'<VRTDataset rasterXSize="{grid.width}" rasterYSize="{grid.height}">'
        f"<SRS>{escape(grid.crs.to_wkt())}</SRS><GeoTransform>{transform}</GeoTransform>"
        + "".join(bands)
        + "</VRTDataset>"
    )


def is_multi_file(path: str | Path) -> bool:
    """A band folder or a STAC item: one acquisition stored in several files."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() == ".json"


def select_bands(source: RasterSource, names: list[str] | None) -> RasterSource:
    """The same acquisition restricted to the named bands (sensor band names or aliases), in that order."""
    if names is None:
        return source
    wanted = [source.sensor.band(n) for n in names]
    have = {b.name: i for i, b in enumerate(source.bands)}
    missing = [b.name for b in wanted if b.name not in have]
    if missing:
        raise InputError(f"{source.path}: bands {missing} are not in this raster; it holds {list(have)}")
    idx = [have[b.name] for b in wanted]
    return RasterSource(
        source.path, source.sensor, wanted, [source.files[i] for i in idx], source.grid, source.date,
        source.dtype, source.nodata,
    )  # fmt: skip


def _window_in_file(path: str, header: DatasetHeader, grid: Grid) -> Window | None:
    """The pixel window of `path` that `grid` is, when it lies on the file's own grid (else None: a warp)."""
    file_grid = header.grid
    if (file_grid.crs is None) != (grid.crs is None):
        raise InputError(
            f"{path}: has no CRS while the scene grid has one (or the reverse); "
            "expected every date and band to be georeferenced to reproject them onto one grid"
        )
    if grid.crs is None:  # pixel units: the grid is a window of the image itself
        window = Window(grid.transform.c, grid.transform.f, grid.width, grid.height)
        if not file_grid.contains_window(window):
            raise InputError(f"{path}: window {window} lies outside the image")
        return window
    t, f = grid.transform, file_grid.transform
    if grid.crs is file_grid.crs and (t.a, t.b, t.d, t.e) == (f.a, f.b, f.d, f.e) and not (f.b or f.d):
        # a window of the file's own grid (the usual chip): its offset without inverting the transform
        col, row = (t.c - f.c) / f.a, (t.f - f.f) / f.e
        if abs(col - round(col)) <= 1e-3 and abs(row - round(row)) <= 1e-3:
            window = Window(round(col), round(row), grid.width, grid.height)
            return window if file_grid.contains_window(window) else None
    window = grid.aligned_window_in(file_grid)
    return window if window is not None and file_grid.contains_window(window) else None


def _read_window(
    src: rasterio.DatasetReader, header: DatasetHeader, indexes: list[int], window: Window, out: np.ndarray
) -> None:
    """Bands `indexes` of a window in one read into `out` (len(indexes), h, w) float32, NaN where nodata.

    GDAL converts to float32 as it reads where that keeps every value (8/16-bit integers, float32), so
    nodata is recognised in the converted values; other dtypes are read as stored and converted here.
    """
    if header.float_read:
        src.read(indexes, window=window, out=out)
        stored = out
    else:
        stored = src.read(indexes, window=window)
        out[:] = stored
    if header.one_nodata is not None:
        out[stored == np.asarray(header.one_nodata, stored.dtype)] = np.nan
        return
    values = [header.nodata[i - 1] for i in indexes]
    for k, index in enumerate(indexes):
        if header.mask_band[index - 1]:
            out[k][src.read_masks(index, window=window) == 0] = np.nan
        elif values[k] is not None:
            out[k][stored[k] == np.asarray(values[k], stored.dtype)] = np.nan


def _warp_band(
    src: rasterio.DatasetReader, index: int, grid: Grid, resampling: Resampling, out: np.ndarray
) -> None:
    """One band warped onto `grid` into `out` (height, width) float32, NaN where nodata or outside the file.

    GDAL's warper reads only the source blocks under the destination window. (A WarpedVRT with NaN as
    nodata returns all-NaN when the CRS changes, so the warp writes into a NaN-filled array instead.)
    """
    out.fill(np.nan)
    reproject(
        rasterio.band(src, index),
        out,
        src_nodata=src.nodata,
        dst_transform=grid.transform,
        dst_crs=grid.crs,
        dst_nodata=np.nan,
        resampling=resampling,
    )


def read_band(
    band_file: BandFile,
    grid: Grid,
    resampling: Resampling = Resampling.bilinear,
    source_path: str | None = None,
) -> np.ndarray:
    """One band resampled onto `grid`: (height, width) float32, NaN where nodata or outside the file."""
    out = np.empty((1, grid.height, grid.width), np.float32)
    _read_files([band_file], grid, resampling, source_path or band_file.path, out)
    return out[0]


def read_source(
    source: RasterSource,
    grid: Grid | None = None,
    resampling: Resampling = Resampling.bilinear,
) -> np.ndarray:
    """All bands of `source` on `grid` (default: its own grid): (bands, height, width) float32 with NaN.

    The bands stored in one file are read in one call when the window lies on the file's grid.
    """
    grid = grid or source.grid
    out = np.empty((len(source.files), grid.height, grid.width), np.float32)
    _read_files(source.files, grid, resampling, source.path, out)
    return out


def _read_files(
    files: list[BandFile], grid: Grid, resampling: Resampling, name: str, out: np.ndarray
) -> None:
    """Fill `out[i]` with band `files[i]` on `grid`, one windowed read per file for consecutive bands."""
    position = 0
    while position < len(files):
        path = files[position].path
        end = position + 1
        while end < len(files) and files[end].path == path:
            end += 1
        header = dataset_header(path)  # opens (or finds) the dataset too
        src = _HANDLES[os.getpid(), path]
        indexes = [f.index for f in files[position:end]]
        window = _window_in_file(path, header, grid)
        with gdal_errors(name):
            if window is not None:
                _read_window(src, header, indexes, window, out[position:end])
            else:
                for k, index in enumerate(indexes):
                    _warp_band(src, index, grid, resampling, out[position + k])
        position = end
