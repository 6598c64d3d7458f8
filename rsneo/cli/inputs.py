"""What the product commands take as input: rasters, folders, globs, STAC items and ItemCollections, URLs.

Each argument becomes one or more `Item`s (one output subfolder each when there are several). Nothing is read
or downloaded here beyond a folder listing and a JSON file: an item's raster is made local (a remote COG
described into a streaming VRT, a STAC item's assets localised) by `Item.local`, inside that item's own run,
so a bad URL fails its item and not the others.
"""

from __future__ import annotations

import glob
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsneo.errors import InputError

RASTER_SUFFIXES = {".tif", ".tiff", ".jp2", ".png", ".img", ".vrt", ".jpg", ".jpeg"}
GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Item:
    """One input of a product command: a raster path or URL, or a STAC item (its JSON, `stac`)."""

    name: str  # output subfolder and summary row; unique within a run
    source: str  # as the user gave it (a URL stays intact), for messages and JSON
    stac: dict[str, Any] | None = field(default=None, compare=False)  # an item of an ItemCollection
    base: Path | None = None  # the folder relative asset hrefs of `stac` start from

    def local(self, folder: Path) -> Path:
        """A local path the readers take: the file itself, a streaming VRT of a remote raster, or a STAC item
        JSON written into `folder` with its assets made local (remote ones as streaming VRTs)."""
        from rsneo.io.remote import is_remote, local_input

        if self.stac is not None:
            return localise_item(self.stac, self.base, folder)
        if is_remote(self.source):
            return local_input(self.source, folder)
        return Path(self.source)


def expand_inputs(args: list[str]) -> list[Item]:
    """Every input named by `args`: files and URLs as they are, a folder's rasters and STAC items (a folder
    of one-band files of one acquisition stays one input), a glob's matches, an ItemCollection's items."""
    from rsneo.io.remote import is_remote

    items: list[Item] = []
    for arg in args:
        if is_remote(arg):
            items.append(Item(_stem(arg), arg))
        elif GLOB_CHARS.search(arg) and not Path(arg).exists():
            matches = sorted(m for m in glob.glob(arg) if _is_input(Path(m)))
            if not matches:
                raise InputError(f"{arg}: no raster or STAC item matches this pattern")
            items += [Item(Path(m).stem, m) for m in matches]
        elif Path(arg).is_dir() and not is_band_folder(Path(arg)):
            found = sorted(p for p in Path(arg).iterdir() if _is_input(p))
            if not found:
                raise InputError(f"{arg}: expected rasters or STAC items in this folder, found none")
            items += [item for p in found for item in _file_items(p)]
        else:
            items += _file_items(Path(arg), arg)
    return unique_names(items)


def _file_items(path: Path, typed: str | None = None) -> list[Item]:
    """A file (or band folder): one item, or one per item of a STAC ItemCollection."""
    if path.suffix.lower() == ".json" and path.is_file():
        document = _read_json(path)
        if document.get("type") == "FeatureCollection":
            features = document.get("features") or []
            if not features:
                raise InputError(f"{path}: a STAC ItemCollection with no items; expected one or more")
            return [
                Item(str(f.get("id") or f"item{i}"), f"{path}#{f.get('id') or i}", f, path.parent.resolve())
                for i, f in enumerate(features)
            ]
        if document.get("type") == "Feature" and _has_remote_asset(document):
            return [Item(str(document.get("id") or path.stem), str(path), document, path.parent.resolve())]
    return [Item(path.stem, typed or str(path))]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{path}: expected a STAC item or ItemCollection (JSON), could not read it ({exc})"
        ) from None
    if not isinstance(document, dict):
        raise InputError(f"{path}: expected a STAC item or ItemCollection (a JSON object)")
    return document


def _has_remote_asset(item: dict[str, Any]) -> bool:
    from rsneo.io.remote import is_remote

    return any(is_remote(str(a.get("href", ""))) for a in (item.get("assets") or {}).values())


def _is_input(path: Path) -> bool:
    return path.suffix.lower() in RASTER_SUFFIXES | {".json"} and path.is_file() or is_band_folder(path)


def is_band_folder(path: Path) -> bool:
    """A folder holding one acquisition as one-band files (BigEarthNet), not a folder of scenes: every raster
    in it has one band and together they read as one sensor's bands."""
    if not path.is_dir():
        return False
    from rsneo.io.dataset import open_raster
    from rsneo.io.read import open_source

    files = [p for p in path.iterdir() if p.suffix.lower() in RASTER_SUFFIXES and p.is_file()]
    if not files:
        return False
    try:
        for file in files:
            with open_raster(file) as src:
                if src.count != 1:
                    return False
        open_source(path)
    except InputError:
        return False
    return True


def _stem(url: str) -> str:
    from rsneo.io.remote import remote_name

    return Path(remote_name(url)).stem


def unique_names(items: list[Item]) -> list[Item]:
    """Names that differ: a repeated stem gets `_2`, `_3`, ... in the order given."""
    seen: dict[str, int] = {}
    out = []
    for item in items:
        name = re.sub(r"[^\w.+-]", "_", item.name) or "item"
        count = seen.get(name.lower(), 0) + 1
        seen[name.lower()] = count
        out.append(Item(name if count == 1 else f"{name}_{count}", item.source, item.stac, item.base))
    return out


def localise_item(item: dict[str, Any], base: Path | None, folder: Path) -> Path:
    """Write STAC item `item` as `<folder>/<id>.json` with every asset href local: relative hrefs resolved
    from `base`, remote rasters described into streaming VRTs beside it (`rsneo.io.remote`)."""
    from rsneo import atomic
    from rsneo.io.remote import is_remote, local_input

    name = re.sub(r"[^\w.+-]", "_", str(item.get("id") or "item"))
    local = json.loads(json.dumps(item))
    local.pop("links", None)  # links point at the catalogue; the readers need the assets only
    for key, asset in (local.get("assets") or {}).items():
        href = str(asset.get("href", ""))
        roles = asset.get("roles") or ["data"]
        if "data" not in roles:
            continue
        if is_remote(href):
            asset["href"] = str(local_input(href, folder / f"{name}.assets").resolve())
        elif not href.startswith("file://") and base is not None and not Path(href).is_absolute():
            asset["href"] = str((base / href).resolve())
        asset.setdefault("roles", roles)
        local["assets"][key] = asset
    path = folder / f"{name}.json"
    text = json.dumps(local, indent=1, sort_keys=True)
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):  # unchanged: same resume signature
        folder.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, text)
    return path
