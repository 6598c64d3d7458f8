"""`rsneo search`: items of a STAC API (pystac-client) as an ItemCollection that `segment`, `change` and `ask`
stream window by window, or downloaded with their assets (`--download`).

Heavy modules are imported inside the command so `rsneo --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from rsneo.cli.app import app, err_console, progress_event, reported_warnings
from rsneo.errors import InputError


def _bbox(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or values[0] > values[2] or values[1] > values[3]:
        raise InputError(f"--bbox: expected WEST,SOUTH,EAST,NORTH in degrees (west <= east), got {text!r}")
    return values  # type: ignore[return-value]


@app.command("search")
def search_command(
    stac: Annotated[str, typer.Option("--stac", help="The STAC API's URL (its landing page).")],
    collection: Annotated[
        list[str] | None, typer.Option("--collection", help="Collection id to search (repeatable).")
    ] = None,
    bbox: Annotated[
        str | None, typer.Option("--bbox", help="WEST,SOUTH,EAST,NORTH in degrees (EPSG:4326).")
    ] = None,
    datetime: Annotated[
        str | None,
        typer.Option("--datetime", help="A date or interval: 2023-06-01, 2023-06-01/2023-08-31, 2023-06/.."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many items.")] = 20,
    out: Annotated[
        Path,
        typer.Option("--out", help="Where the ItemCollection (JSON) goes: give it to segment/change/ask."),
    ] = Path("items.json"),
    download: Annotated[
        Path | None,
        typer.Option(
            "--download", help="Download every item's data assets into this folder (else they stream)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document on stdout: the items found (docs/products.md).")
    ] = False,
) -> None:
    """Search a STAC API and write the matching items as an ItemCollection for segment, change and ask.

    Without --download the assets stay remote: the product commands read them window by window with HTTP
    range requests. With --download each item's data assets are fetched into DIR/<item id>/ and the
    collection written there points at the local files.
    """
    from rsneo.cli.documents import SearchDocument, render
    from rsneo.io.remote import check_url
    from rsneo.io.stac import search_items
    from rsneo.version import __version__

    if limit < 1:
        raise InputError(f"--limit: expected at least 1, got {limit}")
    check_url(stac.rstrip("/") + "/search")
    box = _bbox(bbox)
    with reported_warnings() as warned:
        items = search_items(stac, collection or None, box, datetime, limit)
        if download is not None:
            items = [_download_item(item, download, i, len(items)) for i, item in enumerate(items)]
            out = download / "items.json" if out == Path("items.json") else out
        written = _write_collection(out, items) if items else None
    if not items:
        err_console.print("[yellow]warning:[/] no item matches this search; nothing written", highlight=False)
    rows = [_row(item) for item in items]
    document = SearchDocument(
        rsneo=__version__, ok=True, warnings=warned, stac=stac, matched=len(items), items=rows,
        collection_file=str(written) if written else None,
    )  # fmt: skip
    if as_json:
        typer.echo(render(document))
        return
    for row in rows:
        typer.echo(f"{row['id']}  {row['datetime'] or '-'}  {row['collection'] or '-'}")
    if written:
        typer.echo(f"{len(items)} items: {written}")


def _row(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(item.get("id")),
        "collection": item.get("collection"),
        "datetime": (item.get("properties") or {}).get("datetime"),
        "bbox": item.get("bbox"),
        "assets": {key: str(a.get("href")) for key, a in (item.get("assets") or {}).items()},
    }


def _write_collection(path: Path, items: list[dict[str, Any]]) -> Path:
    from rsneo import atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps({"type": "FeatureCollection", "features": items}, indent=1))
    return path


def _download_item(item: dict[str, Any], folder: Path, index: int, count: int) -> dict[str, Any]:
    """Fetch the item's remote data assets into `folder/<id>/` (each atomically; a finished file is kept on a
    second run) and return the item with local hrefs."""
    from rsneo.io.remote import download_file, is_remote, remote_name

    name = str(item.get("id") or f"item{index}")
    local = json.loads(json.dumps(item))
    for key, asset in (local.get("assets") or {}).items():
        href = str(asset.get("href", ""))
        if "data" not in (asset.get("roles") or ["data"]) or not is_remote(href):
            continue
        progress_event("download", index, count, item=name, asset=key)
        asset["href"] = str(download_file(href, folder / name / remote_name(href)).resolve())
    return local
