"""TorchGeo datasets for the project's data, so TorchGeo samplers and a TorchGeo user's own data plug in.

- `SensorRaster`: a `RasterDataset` over a folder of GeoTIFFs (or COGs) of one registered sensor; samples
  carry the band names, wavelengths and common names. Use it with `RandomGeoSampler` / `GridGeoSampler`.
- `Sen1Floods11Chips`, `BigEarthNetChips`: `NonGeoDataset`s over chip folders in those archives' layouts.
- `random_raster_samples`: seeded `RandomGeoSampler` windows of a `SensorRaster` (`data=torchgeo_raster`).
- `sample_scene`: any of these samples (or any TorchGeo sample with an `image`) as a scene DataArray, so
  `rsneo.data.frames.scene_frames` turns it into model frames.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
import torch
import xarray as xr
from affine import Affine
from torchgeo.datasets import DatasetNotFoundError, NonGeoDataset, RasterDataset
from torchgeo.samplers import RandomGeoSampler

from rsneo.data.recipes import RECIPES, WATER
from rsneo.errors import InputError
from rsneo.io.grid import Grid
from rsneo.io.read import open_source
from rsneo.io.scene import to_scene
from rsneo.sensors import Sensor, get_sensor


class SensorRaster(RasterDataset):
    """GeoTIFFs of one sensor under `paths`, band order given by `file_bands` (default: the sensor's).

    `bands` selects and orders bands (sensor names or aliases). `filename_regex` may hold a `date` group
    (`date_format`) so a time series is indexed by date, as in TorchGeo. Nodata (and gaps) are NaN in
    `image`, as in scenes from `rsneo.io.scene.read_scene`.
    """

    filename_glob = "*.tif"

    def __init__(
        self,
        paths: str | Path | list[str | Path],
        sensor: str | Sensor,
        file_bands: list[str] | None = None,
        bands: list[str] | None = None,
        filename_regex: str = ".*",
        date_format: str = "%Y%m%d",
        crs: Any = None,
        res: float | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        cache: bool = True,
    ) -> None:
        self.sensor = get_sensor(sensor)
        self.all_bands = tuple(self.sensor.band(b).name for b in file_bands or self.sensor.band_names)
        self.filename_regex = filename_regex
        self.date_format = date_format
        chosen = [self.sensor.band(b).name for b in bands] if bands else list(self.all_bands)
        missing = [b for b in chosen if b not in self.all_bands]
        if missing:
            raise InputError(f"SensorRaster: bands {missing} are not among the files' bands {self.all_bands}")
        try:
            super().__init__(paths, crs=crs, res=res, bands=chosen, transforms=None, cache=cache)
        except DatasetNotFoundError:
            raise InputError(
                f"{paths}: expected GeoTIFFs ({self.filename_glob}) of sensor {self.sensor.name}, found none"
            ) from None
        self.user_transforms = transforms
        with rasterio.open(self.index.iloc[0]["filepath"]) as src:
            self.nodata = src.nodata  # TorchGeo fills gaps and nodata with it; samples carry NaN instead

    def __getitem__(self, query: Any) -> dict[str, Any]:
        sample = super().__getitem__(query)
        if self.nodata is not None:
            sample["image"][sample["image"] == self.nodata] = float("nan")  # as `read_scene` marks nodata
        band_objs = [self.sensor.band(b) for b in self.bands]
        sample["sensor"] = self.sensor.name
        sample["bands"] = [b.name for b in band_objs]
        sample["wavelengths"] = torch.tensor([b.wavelength for b in band_objs], dtype=torch.float32)
        sample["band_keys"] = tuple(b.common_name for b in band_objs)
        return self.user_transforms(sample) if self.user_transforms else sample


class Sen1Floods11Chips(NonGeoDataset):
    """Sen1Floods11 hand-labelled chips: `S2/*_S2Hand.tif`, `S1/*_S1Hand.tif`, `Labels/*_LabelHand.tif`, read
    by the archive's one reader (`rsneo.data.recipes`).

    Sample: `image` (13, H, W) Sentinel-2 L1C stored values (NaN = nodata), `image_s1` (2, H, W) dB, `mask`
    (H, W) long with -1 = no data, 0 = land, 1 = water (`classes`); `stem`, `sensor`, `bands`, `wavelengths`.
    """

    classes = WATER.classes  # ("land", "water"): the one table of the archive (rsneo.data.recipes)

    def __init__(self, root: str | Path, transforms: Callable | None = None) -> None:
        self.root = Path(root)
        self.chips = RECIPES["sen1floods11"].items(self.root)
        self.stems = [c.stem for c in self.chips]
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.stems)

    def __getitem__(self, index: int) -> dict[str, Any]:
        (chip,) = RECIPES["sen1floods11"].read(self.chips[index])
        sample: dict[str, Any] = {"stem": chip.name, **_scene_fields(chip.scene)}
        if "sentinel1" in chip.partners:
            sample["image_s1"] = torch.from_numpy(chip.partners["sentinel1"].values[0])
        if chip.mask is not None:
            sample["mask"] = torch.from_numpy(chip.mask)
        return self.transforms(sample) if self.transforms else sample


class BigEarthNetChips(NonGeoDataset):
    """BigEarthNet patches: one folder of one-band GeoTIFFs per patch with `*_labels_metadata.json`, read by
    the archive's one reader (`rsneo.data.recipes`).

    Sample: `image` (bands, 120, 120) on the 10 m grid (20/60 m bands bilinear), `image_s1` (2, 120, 120)
    where the Sentinel-1 partner folder is there, `labels` (CORINE names), `label` multi-hot over `classes`
    (all label names seen under `root`, sorted), `date`, band metadata.
    """

    def __init__(self, root: str | Path, transforms: Callable | None = None) -> None:
        self.root = Path(root)
        self.items = RECIPES["bigearthnet"].items(self.root)
        self.folders = [patch.folder for patch, _ in self.items]
        self.meta = [list(patch.labels or ()) for patch, _ in self.items]
        self.classes = tuple(sorted({label for labels in self.meta for label in labels}))
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, index: int) -> dict[str, Any]:
        (patch,) = RECIPES["bigearthnet"].read(self.items[index])
        labels = list(patch.labels)
        multi_hot = torch.zeros(len(self.classes))
        multi_hot[[self.classes.index(label) for label in labels]] = 1
        sample = {"patch": patch.name, "labels": labels, "label": multi_hot, **_scene_fields(patch.scene)}
        if "sentinel1" in patch.partners:
            sample["image_s1"] = torch.from_numpy(patch.partners["sentinel1"].values[0])
        return self.transforms(sample) if self.transforms else sample


def _scene_fields(scene: xr.DataArray) -> dict[str, Any]:
    date = scene["time"].values[0]
    return {
        "image": torch.from_numpy(scene.values[0]),  # (bands, y, x) stored units, NaN = nodata
        "sensor": scene.attrs["sensor"],
        "bands": [str(b) for b in scene["band"].values],
        "wavelengths": torch.tensor(scene["wavelength"].values, dtype=torch.float32),
        "band_keys": tuple(str(k) for k in scene["common_name"].values),
        "date": None if np.isnat(date) else str(date.astype("datetime64[D]")),
        "crs": scene.attrs["crs"],
        "transform": scene.attrs["transform"],
    }


def sample_scene(sample: dict[str, Any]) -> xr.DataArray:
    """A dataset sample (`image`, `sensor`, `bands`; TorchGeo `bounds`/`crs` when present) as a scene."""
    sensor = get_sensor(sample["sensor"])
    image = sample["image"].numpy().astype(np.float32)  # (bands, y, x)
    height, width = image.shape[-2:]
    date = np.datetime64(sample["date"], "D") if sample.get("date") else None
    if "bounds" in sample and not isinstance(sample.get("transform"), tuple):  # TorchGeo GeoSlice query
        x, y = sample["bounds"][0], sample["bounds"][1]
        res_x, res_y = (x.stop - x.start) / width, (y.stop - y.start) / height
        transform = Affine(res_x, 0, x.start, 0, -res_y, y.stop)
        crs = sample["crs"]
        start = sample["bounds"][2].start if len(sample["bounds"]) > 2 else None
        if start is not None and start > pd.Timestamp.min:  # an undated index spans pandas' whole range
            date = np.datetime64(start.date(), "D")
    else:
        from rasterio.crs import CRS

        transform = Affine(*sample.get("transform", Affine.identity()))
        crs = CRS.from_wkt(sample["crs"]) if sample.get("crs") else None
    bands = [sensor.band(b) for b in sample["bands"]]
    return to_scene(image[None], sensor, bands, Grid(crs, transform, width, height), [date])


def random_raster_samples(
    paths: str | Path,
    sensor: str,
    tile: int,
    count: int,
    seed: int,
    file_bands: list[str] | None = None,
) -> list[dict[str, Any]]:
    """`count` windows of `tile` pixels from GeoTIFFs of one sensor, drawn by TorchGeo's `RandomGeoSampler`
    with a generator seeded by `seed`, so a user's own folder trains reproducibly (`data=torchgeo_raster`)."""
    dataset = SensorRaster(paths, sensor, file_bands=file_bands)
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomGeoSampler(dataset, size=tile, length=count, generator=generator)
    # TorchGeo 0.8 picks each window's file with the global generator (only the offset uses `generator`):
    # seed that too, inside a fork so the caller's random state is left as it was
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [dataset[query] for query in sampler]


def source_bands(path: str | Path, sensor: str | None = None) -> list[str]:
    """The band names of one file of an archive (to pass as `SensorRaster(file_bands=...)`)."""
    return [b.name for b in open_source(path, sensor).bands]
