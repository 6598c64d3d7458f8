"""Open any raster GDAL reads (or a folder of one-band files) as a `RasterSource`, and read windows of it.

Reading uses rasterio directly: a window that lies on the file's own grid is a plain windowed `read`;
anything else (another resolution, a shifted or reprojected grid) is warped by GDAL straight into the
requested window, so only the source blocks under the window are decoded. Values stay in the sensor's
stored units, as float32 with NaN wherever the file says nodata (or has no data: outside its extent).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.windows import Window

from rsneo.errors import InputError, RSNeoWarning
from rsneo.io.dataset import (  # noqa: F401  (gdal_message: imported from here by the CLI)
    BandFile,
    DatasetHeader,
    RasterSource,
    data_bands,
    dataset_grid,
    dataset_header,
    gdal_errors,
    gdal_message,
    open_dataset,
    open_raster,
)
from rsneo.io.detect import acquisition_date, assign_bands, detect_sensor, folder_band_name
from rsneo.io.grid import Grid
from rsneo.io.stac import open_stac_item
from rsneo.sensors import Sensor

RASTER_SUFFIXES = {".tif", ".tiff", ".jp2", ".png", ".img", ".vrt", ".jpg", ".jpeg"}


class PixelUnitsWarning(RSNeoWarning):
    """The raster has no georeference; coordinates are pixel columns and rows."""


def warn_pixel_units(path: Path | str, stacklevel: int = 3) -> None:
    """The one warning for a raster without a georeference, naming the file: the reader and the products
    say it in the same words, so a command that meets it twice shows it once."""
    warnings.warn(
        f"{path} has no georeference: using pixel units (x, y are column and row; areas are pixel counts, "
        "not hectares)",
        PixelUnitsWarning,
        stacklevel=stacklevel,
    )


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
        indexes = data_bands(first)  # an alpha band that masks the others is not a band of the sensor
        descriptions = [descriptions[i - 1] for i in indexes]
        wavelengths = None if wavelengths is None else [wavelengths[i - 1] for i in indexes]
        sensor_obj = detect_sensor(path, first, descriptions, sensor, band_count=len(indexes))
        band_objs = assign_bands(path, sensor_obj, descriptions, bands, wavelengths, len(indexes))
        band_files = [BandFile(str(path), i) for i in indexes]
    grid = dataset_grid(first)
    if grid.crs is None:
        warn_pixel_units(path)
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


@contextmanager
def open_input(path: str | Path) -> Iterator[rasterio.io.DatasetReaderBase]:
    """An input to read windows of, closed on exit: a raster file (`rsneo.io.dataset.open_raster`), or a band
    folder or STAC item as one stacked virtual raster (`source_vrt`)."""
    if not is_multi_file(path):
        with open_raster(path) as handle:
            yield handle
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PixelUnitsWarning)
        vrt = source_vrt(open_source(path))
    with gdal_errors(str(path), "open"):
        handle = rasterio.open(vrt)
    with handle:
        yield handle


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
    """All bands of `source` on `grid` (default: its own grid): (bands, height, width) float32, NaN where a
    pixel is nodata, masked, NaN or infinite in the file.

    The bands stored in one file are read in one call when the window lies on the file's grid.
    """
    grid = grid or source.grid
    out = np.empty((len(source.files), grid.height, grid.width), np.float32)
    _read_files(source.files, grid, resampling, source.path, out)
    out[np.isinf(out)] = np.nan  # an infinity is no measurement either: invalid like NaN and nodata
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
        header = dataset_header(path)
        src = open_dataset(path)  # the handle the header was read from (cached)
        indexes = [f.index for f in files[position:end]]
        window = _window_in_file(path, header, grid)
        with gdal_errors(name):
            if window is not None:
                _read_window(src, header, indexes, window, out[position:end])
            else:
                for k, index in enumerate(indexes):
                    _warp_band(src, index, grid, resampling, out[position + k])
        position = end
