"""Raster input and output at the edges of rsneo.

Reading (data area; what train, products and demo call):
- `rsneo.io.scene.read_scene(paths, sensor=None, bands=None, subset=None, window=None, bounds=None,
  resolution=None)` -> xarray DataArray (time, band, y, x), float32 in the sensor's stored units,
  NaN = nodata; coords `time`, `band`, `wavelength` (um), `common_name`, `group`, `y`, `x`; attrs `sensor`,
  `crs` (WKT, "" for pixel units), `transform`, `units`, `dtype`, `sources`. A list of paths is a series:
  sorted by date, checked (`rsneo.io.grid.check_series`, the checks `rsneo change` and `ask` apply too) and
  resampled/reprojected onto the first date's grid. Helpers: `grid_of(scene)`, `bands_of(scene)`,
  `valid_mask(scene)`, `read_mask(path, grid)` (labels, nearest),
  `to_scene(array, sensor, bands, grid, dates)`.
- `rsneo.io.read.open_source(path, sensor=None, bands=None)` -> `RasterSource` (sensor, bands, band files,
  grid, date) for a raster file, a folder of one-band files (BigEarthNet) or a local STAC item JSON;
  `read_source(source, grid)` reads all bands onto any grid window; `PixelUnitsWarning` for images without
  georeference. Both `read` and `stac` open files through `rsneo.io.dataset` (`open_dataset`: one cached
  opener per process; `open_raster`: the same checks, uncached, for whole-file reads and rsneo's own
  outputs; `RasterSource`, `BandFile`). `read.open_input(path)` opens a file, band folder or STAC item as one
  dataset. `rsneo.io.grid.Grid` (crs, transform, width, height; `.window()`, `.resampled()`).
- Prediction's windows (`rsneo.io.windows`): `aligned_datasets(paths, sensors, bands)` (dates checked as
  scenes are, warped onto the first date's grid), `RasterWindows(datasets).read(row, col, size)` -> pixels
  and a validity mask, `read_overview`, `overview_size(width, height, max_side, token_size)`,
  `raster_statistics`.
- `rsneo.io.describe.describe_raster(path)`: the facts `rsneo info` prints.
- Sensor detection (`rsneo.io.detect`): product names in file names, ENVI `sensor type`, band descriptions,
  RGB colour interpretation; otherwise `sensor=` is required and the error says so.
All user-fixable problems raise `rsneo.errors.InputError` naming the file.

Writing (products area): `cog.py` (Cloud-Optimised GeoTIFF, writing only; `gdal_env()` holds rsneo's only
GDAL settings), `vector.py` (GeoPackage), `qgis.py`, `report.py`. `areas.py`: true pixel areas in any CRS
(`PixelAreas`), pixel counts without one; every reported area goes through it. `runstate.py`: the
output-folder lock, input fingerprints for resume signatures, `ResumeNotice`.
"""
