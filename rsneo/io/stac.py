"""A local STAC item (JSON whose assets point at local rasters) as one acquisition, via pystac; and item
search on a STAC API (pystac-client), whose items the product commands stream or `rsneo search` downloads.

Each data asset is matched to a sensor band by its key, its `eo:bands`/`bands` names or common names; assets
that are no band (thumbnails, metadata, masks) are skipped. The sensor comes from `platform`/`constellation`
and the processing level, or is given.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pystac

from rsneo.errors import InputError
from rsneo.io.dataset import BandFile, RasterSource, dataset_grid, open_dataset
from rsneo.sensors import Band, Sensor, get_sensor

PLATFORMS: tuple[tuple[str, str], ...] = (
    (r"sentinel-?2.*", "sentinel2"),
    (r"sentinel-?1.*", "sentinel1_grd"),
    (r"landsat-?[89]", "landsat8_oli"),
    (r"landsat-?7", "landsat7_etm"),
    (r"landsat-?[45]", "landsat5_tm"),
    (r"naip", "naip"),
)


def _sensor_of(item: pystac.Item, path: Path) -> Sensor:
    props = item.properties
    platform = " ".join(str(props.get(k, "")) for k in ("platform", "constellation")).lower()
    for pattern, name in PLATFORMS:
        if re.search(pattern, platform):
            if name == "sentinel2":
                level = f"{item.id} {props.get('processing:level', '')} {props.get('s2:product_type', '')}"
                return get_sensor("sentinel2_l1c" if "L1C" in level.upper() else "sentinel2_l2a")
            return get_sensor(name)
    raise InputError(
        f"{path}: the STAC item names no known platform (found {platform.strip() or 'none'}); "
        "pass --sensor NAME"
    )


def _asset_band_names(key: str, asset: pystac.Asset) -> list[list[str]]:
    """Candidate names per band of an asset (one list per band it holds)."""
    entries = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
    if not entries:
        return [[key]]
    return [
        [n for n in (e.get("name"), e.get("eo:common_name"), e.get("common_name")) if n]
        + ([key] if len(entries) == 1 else [])
        for e in entries
    ]


def open_stac_item(
    path: str | Path, sensor: str | Sensor | None = None, bands: list[str] | None = None
) -> RasterSource:
    """Open a local STAC item as a `RasterSource` (bands in the sensor's order, or in `bands` order)."""
    path = Path(path)
    try:
        item = pystac.Item.from_file(str(path))
    except Exception as exc:  # pystac raises several types for a file that is not an item
        raise InputError(f"{path}: expected a STAC item JSON, could not read it ({exc})") from None
    sensor_obj = get_sensor(sensor) if sensor is not None else _sensor_of(item, path)
    found: dict[str, tuple[Band, BandFile]] = {}
    for key, asset in item.assets.items():
        if asset.roles and "data" not in asset.roles:
            continue
        href = asset.get_absolute_href() or asset.href
        if re.match(r"^[a-z][a-z0-9+.-]*://", href) and not href.startswith("file://"):
            raise InputError(
                f"{path}: asset {key} is remote ({href}); `rsneo segment/change/ask` stream such items, "
                "`rsneo search --download` fetches them; here expected local files"
            )
        href = href.removeprefix("file://")
        for index, names in enumerate(_asset_band_names(key, asset), start=1):
            band = next((sensor_obj.band(n) for n in names if _known(sensor_obj, n)), None)
            if band is not None and band.name not in found:
                found[band.name] = (band, BandFile(href, index))
    if not found:
        raise InputError(f"{path}: no asset of this item is a band of {sensor_obj.name}")
    order = (
        [sensor_obj.band(n).name for n in bands]
        if bands
        else [b for b in sensor_obj.band_names if b in found]
    )
    missing = [n for n in order if n not in found]
    if missing:
        raise InputError(f"{path}: bands {missing} are not assets of this item; it has {list(found)}")
    files = [found[n][1] for n in order]
    datasets = [open_dataset(f.path) for f in files]
    finest = min(datasets, key=lambda d: d.res[0])
    date = np.datetime64(item.datetime.date(), "D") if item.datetime else None
    return RasterSource(
        path=str(path),
        sensor=sensor_obj,
        bands=[found[n][0] for n in order],
        files=files,
        grid=dataset_grid(finest),
        date=date,
        dtype=finest.dtypes[0],
        nodata=finest.nodata,
    )


def _known(sensor: Sensor, name: str) -> bool:
    try:
        sensor.band(name)
    except InputError:
        return False
    return True


def search_items(
    api: str,
    collections: list[str] | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    datetime: str | None = None,
    limit: int = 100,
) -> list[dict]:
    """Items of a STAC API matching a search (pystac-client), as item dictionaries with absolute hrefs.

    A URL that is no STAC API, a server that does not answer and an API that refuses the search are
    `InputError`s naming the URL.
    """
    import pystac_client
    import requests
    from pystac_client.exceptions import APIError

    try:
        client = pystac_client.Client.open(api, timeout=30)
        search = client.search(
            collections=collections, bbox=bbox, datetime=datetime, max_items=limit, limit=min(limit, 100)
        )
        return [item.to_dict(transform_hrefs=True) for item in search.items()]
    except APIError as exc:  # pystac-client wraps failed connections too
        why = " ".join(str(exc).split())
        if re.search(r"Failed to establish|Max retries|Name or service|timed out", why):
            raise InputError(f"{api}: cannot reach the STAC API (connection failed or timed out)") from None
        raise InputError(f"{api}: the STAC API refused the search ({why[:300]})") from None
    except requests.exceptions.Timeout:
        raise InputError(f"{api}: no answer within 30 s (timeout)") from None
    except requests.exceptions.RequestException as exc:
        raise InputError(f"{api}: cannot reach the STAC API ({type(exc).__name__})") from None
    except (NotImplementedError, pystac.STACError, ValueError, KeyError) as exc:
        raise InputError(f"{api}: expected a STAC API with item search ({exc})") from None
