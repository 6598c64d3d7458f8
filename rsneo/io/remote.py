"""Remote rasters: http(s) COGs, `/vsicurl/`, `/vsis3/` (and `s3://`) paths, read through GDAL with range
requests, window by window, never as a whole file.

A remote raster is described once into a small local VRT (`<name>.vrt`: the remote's bands, georeference,
metadata and overviews, its pixels left where they are). Every reader, resume signature and QGIS project
then takes that VRT like any local raster, and GDAL fetches only the blocks under each window it reads. The
VRT records the remote's size and modification time, so a changed remote does not resume an old run.
A URL is never passed through `Path` (which would turn `https://` into `https:/`): messages quote it intact.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

import rasterio
import rasterio.shutil
from rasterio.errors import RasterioError

from rsneo import atomic
from rsneo.errors import InputError

RasterPath = str | Path  # a local path, or a URL / GDAL virtual path kept as text
URL_SCHEMES = ("http://", "https://", "s3://", "gs://")
VSI_PREFIXES = ("/vsicurl/", "/vsis3/", "/vsigs/", "/vsiaz/", "/vsiadls/", "/vsioss/", "/vsiswift/")
HTTP_TIMEOUT_S = 30  # seconds GDAL and rsneo wait for a server to answer before the run stops with exit 2
# GDAL settings for reading remote rasters, unless the user set them: a bounded wait and two retries. (No
# directory listing on open is set only around `open_remote`: in the environment it would also hide the
# sidecar files of local rasters, e.g. an ENVI .hdr, from every later open in the process.)
NO_LISTING = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
GDAL_REMOTE_DEFAULTS = {
    "GDAL_HTTP_TIMEOUT": str(HTTP_TIMEOUT_S),
    "GDAL_HTTP_CONNECTTIMEOUT": str(HTTP_TIMEOUT_S),
    "GDAL_HTTP_MAX_RETRY": "2",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "CPL_VSIL_CURL_CHUNK_SIZE": str(64 * 1024),  # bytes per range request (GDAL's default 16 KiB)
}


def is_remote(path: RasterPath) -> bool:
    """A URL or a GDAL network path (as typed: `Path` would already have mangled `https://`)."""
    text = str(path)
    return text.startswith(URL_SCHEMES) or text.startswith(VSI_PREFIXES)


def gdal_path(url: str) -> str:
    """The GDAL path of a remote raster: `https://h/a.tif` -> `/vsicurl/https://h/a.tif`, `s3://b/k` ->
    `/vsis3/b/k`; GDAL network paths stay as they are."""
    if url.startswith(VSI_PREFIXES):
        return url
    if url.startswith(("http://", "https://")):
        return f"/vsicurl/{url}"
    scheme, rest = url.split("://", 1)
    return f"/vsi{scheme}/{rest}"


def remote_name(url: str) -> str:
    """The file name a remote raster has at the end of its URL (`scene.tif`), for output names."""
    path = urlparse(url.split("/vsicurl/", 1)[-1]).path if "://" in url else url
    name = unquote(path.rstrip("/").rsplit("/", 1)[-1])
    return re.sub(r"[^\w.+-]", "_", name) or "remote"


def http_timeout() -> float:
    """Seconds to wait for a server: GDAL_HTTP_TIMEOUT when the user set it, else `HTTP_TIMEOUT_S`."""
    try:
        return float(os.environ.get("GDAL_HTTP_TIMEOUT", HTTP_TIMEOUT_S))
    except ValueError:
        return float(HTTP_TIMEOUT_S)


def use_remote_defaults() -> None:
    """Put `GDAL_REMOTE_DEFAULTS` in the environment (GDAL reads it at every remote open and read), keeping
    any value the user set."""
    for key, value in GDAL_REMOTE_DEFAULTS.items():
        os.environ.setdefault(key, value)


def remote_error(url: str, exc: BaseException) -> InputError:
    """A user-facing error for a remote raster that could not be opened or read, with the URL intact."""
    text = " ".join(str(exc).split())
    code = re.search(r"HTTP (?:response )?code:? ?(\d{3})", text) or re.search(r"\b(40\d|41\d|50\d)\b", text)
    if code and code.group(1) in ("404", "410"):
        why = f"not found on the server (HTTP {code.group(1)})"
    elif code and code.group(1) in ("401", "403"):
        why = f"access refused (HTTP {code.group(1)}); credentials for GDAL go in its environment variables"
    elif code:
        why = f"the server answered HTTP {code.group(1)}"
    elif re.search(r"timed? ?out|timeout", text, re.IGNORECASE):
        why = f"no answer within {http_timeout():g} s (timeout)"
    elif re.search(r"resolve|connect|refused", text, re.IGNORECASE):
        why = "cannot reach the server (connection failed)"
    elif "not recognized as being in a supported file format" in text:
        why = "not a raster format GDAL reads (is it a web page?)"
    else:
        why = f"cannot open it as a raster (GDAL: {text})"
    return InputError(f"{url}: {why}")


def check_url(url: str) -> None:
    """Refuse a malformed URL before any request: a scheme rsneo reads and a host (or bucket)."""
    if url.startswith(VSI_PREFIXES):
        return
    parsed = urlparse(url)
    if not parsed.netloc or not parsed.path.strip("/"):
        raise InputError(f"{url}: expected a URL of a raster file, such as https://host/path/scene.tif")


def remote_stamp(url: str) -> dict[str, str]:
    """What identifies the remote file's content without reading it: size and modification time (HTTP HEAD).
    Empty for object-store paths (`/vsis3/`, ...), whose stamp GDAL keeps to itself."""
    target = url.split("/vsicurl/", 1)[-1]
    if not target.startswith(("http://", "https://")):
        return {}
    request = urllib.request.Request(target, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=http_timeout()) as answer:  # noqa: S310 (http(s) only)
            headers = answer.headers
    except urllib.error.HTTPError as exc:
        raise remote_error(url, RuntimeError(f"HTTP response code: {exc.code}")) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise remote_error(url, exc) from None
    keys = ("Content-Length", "Last-Modified", "ETag")
    return {k.lower(): headers[k] for k in keys if headers.get(k)}


@contextmanager
def open_remote(url: str) -> Iterator[rasterio.DatasetReader]:
    """The remote raster opened through GDAL (headers and the tile index only), errors naming the URL."""
    check_url(url)
    use_remote_defaults()
    try:
        with rasterio.Env(**{k: os.environ.get(k, v) for k, v in NO_LISTING.items()}):
            handle = rasterio.open(gdal_path(url))
    except RasterioError as exc:
        raise remote_error(url, exc) from None
    with handle:
        yield handle


def describe_remote(url: str, vrt: Path) -> Path:
    """Write `vrt`, a local VRT that reads the remote raster `url` window by window, unless an identical one
    is there already (an unchanged input keeps its resume signature). Returns `vrt`."""
    check_url(url)
    stamp = remote_stamp(url)
    with open_remote(url) as src, tempfile.TemporaryDirectory(prefix="rsneo-vrt-") as scratch:
        draft = Path(scratch) / vrt.name
        try:
            rasterio.shutil.copy(src, draft, driver="VRT")
        except RasterioError as exc:
            raise remote_error(url, exc) from None
        with rasterio.open(draft, "r+") as edit:  # the remote's identity, in the VRT itself
            edit.update_tags(rsneo_remote=json.dumps({"url": url, **stamp}))
        text = draft.read_text(encoding="utf-8")
    if not (vrt.is_file() and vrt.read_text(encoding="utf-8") == text):
        vrt.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(vrt, text)
    return vrt


def local_input(raster: RasterPath, folder: Path) -> Path:
    """A local path for `raster`: local inputs as they are; a remote raster as the VRT `<folder>/<name>.vrt`
    that streams it (written once, see `describe_remote`)."""
    if not is_remote(raster):
        return Path(raster)
    text = str(raster)
    stem = Path(remote_name(text)).stem
    return describe_remote(text, Path(folder) / f"{stem}.vrt")


def remote_source(vrt: Path) -> str | None:
    """The URL a VRT written by `describe_remote` streams (None for any other raster)."""
    if vrt.suffix.lower() != ".vrt" or not vrt.is_file():
        return None
    with rasterio.open(vrt) as src:
        record = src.tags().get("rsneo_remote")
    return json.loads(record)["url"] if record else None


def download_file(url: str, path: Path) -> Path:
    """Fetch `url` (http or https) to `path` in 1 MiB chunks through a temporary name; a file already there
    with the remote's size is kept (an interrupted download starts that file again)."""
    check_url(url)
    target = url.split("/vsicurl/", 1)[-1]
    if not target.startswith(("http://", "https://")):
        raise InputError(f"{url}: only http(s) assets can be downloaded; the product commands stream it")
    size = remote_stamp(url).get("content-length")
    if path.is_file() and size is not None and path.stat().st_size == int(size):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with (
            urllib.request.urlopen(target, timeout=http_timeout()) as answer,  # noqa: S310 (http(s) only)
            atomic.atomic_path(path, "download") as partial,
            open(partial, "wb") as f,
        ):
            for chunk in iter(lambda: answer.read(1 << 20), b""):
                f.write(chunk)
    except urllib.error.HTTPError as exc:
        raise remote_error(url, RuntimeError(f"HTTP response code: {exc.code}")) from None
    except (urllib.error.URLError, TimeoutError) as exc:
        raise remote_error(url, exc) from None
    return path
