"""QGIS styles (QML) and projects (.qgz) written as plain XML, so no QGIS install is needed to make them.

The project opens the input raster (RGB-like band choice, stretched), the class map COG with a paletted
renderer (class names and colours, semi-transparent so the imagery shows through; "no change" not drawn)
and the class polygons as outlines in their class colours (categorised renderer). Classes the model was
never trained on are labelled "(untrained)". Paths inside the project are relative to the project file for
the outputs beside it, absolute for the input. Tests open the result with QGIS itself and draw it, to check
where layers land (the `qgis` fixture of tests/conftest.py).
"""

from __future__ import annotations

import uuid
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pyproj
import rasterio
from rasterio.windows import Window

from rsneo import atomic
from rsneo.io.cog import ClassLegend
from rsneo.io.palette import family_of
from rsneo.io.read import open_input

QGIS_VERSION = "3.22.0-Białowieża"  # the format version we write; later QGIS versions read it
PREDICTION_OPACITY = 0.6  # class maps over the imagery: colours readable, the image still visible beneath
DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"


@dataclass(frozen=True)
class RasterDisplay:
    """How to show an input raster: three bands (1-based) with display ranges, or one grey band."""

    bands: tuple[int, ...]
    ranges: tuple[tuple[float, float], ...]


def raster_display(
    path: Path, rgb: tuple[int, int, int] | None = None, sample: int = 512, blocks: int = 16
) -> RasterDisplay:
    """Choose bands and a 2-98 % stretch from a sample of the raster, so this stays cheap on large rasters.

    With overviews (or a small raster) a decimated read of about `sample` pixels a side, which GDAL serves
    from the overviews. Without them a decimated read would decode every block of the file (two thirds of
    `rsneo segment`'s time once), so the sample is up to `blocks` whole blocks spread evenly over the raster,
    each read decimated to at most `sample / 4` pixels a side.
    """
    with open_input(path) as src:
        bands = rgb or ((1, 2, 3) if src.count >= 3 else (1,))
        block_h, block_w = src.block_shapes[bands[0] - 1]
        n_blocks = -(-src.height // block_h) * -(-src.width // block_w)
        if src.overviews(bands[0]) or n_blocks <= blocks:
            scale = max(1, max(src.width, src.height) // sample)
            shape = (max(1, src.height // scale), max(1, src.width // scale))
            data = src.read(list(bands), out_shape=(len(bands), *shape), masked=True)
            values = [band.compressed() for band in data]
        else:
            side = max(1, int(np.sqrt(blocks)))
            rows = np.unique(np.linspace(0, src.height // block_h - 1, side).round().astype(int)) * block_h
            cols = np.unique(np.linspace(0, src.width // block_w - 1, side).round().astype(int)) * block_w
            step = max(1, max(block_h, block_w) // max(1, sample // 4))
            parts = [
                src.read(list(bands), window=Window(c, r, block_w, block_h), masked=True)[:, ::step, ::step]
                for r in rows
                for c in cols
            ]  # each (bands, <= sample / 4, <= sample / 4)
            values = [np.concatenate([part[i].compressed() for part in parts]) for i in range(len(bands))]
    ranges = []
    for band in values:
        if band.size == 0:
            ranges.append((0.0, 1.0))
            continue
        lo, hi = np.percentile(band, [2, 98])
        ranges.append((float(lo), float(hi) if hi > lo else float(lo) + 1.0))
    return RasterDisplay(tuple(bands), tuple(ranges))


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    node = ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})
    if text is not None:
        node.text = text
    return node


def _srs(parent: ET.Element, crs: rasterio.crs.CRS | None) -> None:
    ref = _sub(parent, "spatialrefsys")
    if crs is None:
        return
    _sub(ref, "wkt", crs.to_wkt(version="WKT2_2019"))
    with warnings.catch_warnings():  # PROJ strings are lossy; QGIS reads the WKT first, proj4 is a fallback
        warnings.simplefilter("ignore")
        _sub(ref, "proj4", pyproj.CRS.from_wkt(crs.to_wkt()).to_proj4() or "")
    epsg = crs.to_epsg()
    if epsg:
        _sub(ref, "srid", str(epsg))
        _sub(ref, "authid", f"EPSG:{epsg}")
    _sub(ref, "geographicflag", "true" if crs.is_geographic else "false")


def _palette_renderer(parent: ET.Element, legend: ClassLegend) -> ET.Element:
    renderer = _sub(
        parent, "rasterrenderer", type="paletted", band="1", opacity=str(PREDICTION_OPACITY), alphaBand="-1"
    )
    palette = _sub(renderer, "colorPalette")
    for i, name in enumerate(legend.names):
        alpha = "0" if family_of(name) == "no change" else "255"  # a change map shows the change only
        _sub(palette, "paletteEntry", value=str(i), color=legend.hex(i), alpha=alpha, label=legend.label(i))
    return renderer


def qml_document(legend: ClassLegend) -> str:
    """A QGIS raster style: paletted renderer on band 1 with the class names and colours."""
    root = ET.Element("qgis", version=QGIS_VERSION, styleCategories="AllStyleCategories")
    _palette_renderer(_sub(root, "pipe"), legend)
    ET.indent(root)
    return DOCTYPE + ET.tostring(root, encoding="unicode")


def write_qml(path: Path, legend: ClassLegend) -> Path:
    """Write the style next to the COG with the same stem, where QGIS picks it up as the layer's default."""
    path = Path(path)
    atomic.write_text(path, qml_document(legend))
    return path


def _input_renderer(parent: ET.Element, display: RasterDisplay) -> None:
    if len(display.bands) >= 3:
        renderer = _sub(
            parent,
            "rasterrenderer",
            type="multibandcolor",
            opacity="1",
            alphaBand="-1",
            redBand=str(display.bands[0]),
            greenBand=str(display.bands[1]),
            blueBand=str(display.bands[2]),
        )
        for colour, (lo, hi) in zip(("red", "green", "blue"), display.ranges, strict=False):
            enhance = _sub(renderer, f"{colour}ContrastEnhancement")
            _sub(enhance, "minValue", repr(lo))
            _sub(enhance, "maxValue", repr(hi))
            _sub(enhance, "algorithm", "StretchToMinimumMaximum")
    else:
        renderer = _sub(
            parent,
            "rasterrenderer",
            type="singlebandgray",
            opacity="1",
            alphaBand="-1",
            grayBand=str(display.bands[0]),
            gradient="BlackToWhite",
        )
        enhance = _sub(renderer, "contrastEnhancement")
        _sub(enhance, "minValue", repr(display.ranges[0][0]))
        _sub(enhance, "maxValue", repr(display.ranges[0][1]))
        _sub(enhance, "algorithm", "StretchToMinimumMaximum")


def _vector_renderer(parent: ET.Element, legend: ClassLegend, field: str = "class_name") -> None:
    renderer = _sub(
        parent, "renderer-v2", type="categorizedSymbol", attr=field, forceraster="0", symbollevels="0"
    )
    categories = _sub(renderer, "categories")
    symbols = _sub(renderer, "symbols")
    for i, name in enumerate(legend.names):
        _sub(categories, "category", render="true", symbol=str(i), value=name, label=legend.label(i))
        symbol = _sub(
            symbols, "symbol", name=str(i), type="fill", alpha="1", clip_to_extent="1", force_rhr="0"
        )
        layer = _sub(symbol, "layer", **{"class": "SimpleFill", "pass": "0", "locked": "0", "enabled": "1"})
        r, g, b = legend.colors[i]
        for key, value in (  # outlines only: the class map beneath carries the fill
            ("color", f"{r},{g},{b},0"),
            ("outline_color", f"{r},{g},{b},255"),
            ("outline_width", "0.4"),
            ("outline_width_unit", "MM"),
            ("style", "no"),
            ("outline_style", "solid"),
        ):
            _sub(layer, "prop", k=key, v=value)


@dataclass(frozen=True)
class ProjectLayer:
    """One layer of a project: a raster (input or class map) or the class polygons of a GeoPackage."""

    name: str
    source: str  # as written in the project: "./pred.tif", "/abs/in.tif", "./pred.gpkg|layername=classes"
    kind: str  # "input", "classes" (raster), "polygons" (vector)
    legend: ClassLegend | None = None
    display: RasterDisplay | None = None


def qgs_document(layers: list[ProjectLayer], crs: rasterio.crs.CRS | None, title: str) -> str:
    """The .qgs XML: layer tree (first on top), map layers with renderers, project CRS, relative paths."""
    root = ET.Element("qgis", projectname=title, version=QGIS_VERSION)
    _sub(root, "homePath", path="")
    _sub(root, "title", title)
    _srs(_sub(root, "projectCrs"), crs)
    tree = _sub(root, "layer-tree-group")
    project_layers = _sub(root, "projectlayers")
    order = _sub(root, "layerorder")
    for layer in layers:
        layer_id = f"{layer.kind}_{uuid.uuid4().hex}"
        provider = "ogr" if layer.kind == "polygons" else "gdal"
        _sub(
            tree,
            "layer-tree-layer",
            id=layer_id,
            name=layer.name,
            source=layer.source,
            providerKey=provider,
            checked="Qt::Checked",
            expanded="1",
        )
        _sub(order, "layer", id=layer_id)
        kind = "vector" if layer.kind == "polygons" else "raster"
        attrs = {"type": kind}
        if kind == "vector":
            attrs.update(geometry="Polygon", wkbType="MultiPolygon")
        node = _sub(project_layers, "maplayer", **attrs)
        _sub(node, "id", layer_id)
        _sub(node, "datasource", layer.source)
        _sub(node, "layername", layer.name)
        _srs(_sub(node, "srs"), crs)
        _sub(node, "provider", provider, **({"encoding": "UTF-8"} if kind == "vector" else {}))
        if layer.kind == "polygons":
            _vector_renderer(node, layer.legend)
            _sub(node, "layerOpacity", "1")
        else:
            pipe = _sub(node, "pipe")
            if layer.kind == "classes":
                _palette_renderer(pipe, layer.legend)
            else:
                _input_renderer(pipe, layer.display)
    properties = _sub(root, "properties")
    _sub(_sub(properties, "Paths"), "Absolute", "false", type="bool")
    # QGIS only reads <projectCrs> when this flag is set
    _sub(_sub(properties, "SpatialRefSys"), "ProjectionsEnabled", "1" if crs else "0", type="int")
    ET.indent(root)
    return DOCTYPE + ET.tostring(root, encoding="unicode")


def write_qgz(
    path: Path,
    *,
    inputs: list[Path] = (),
    input_rgb: tuple[int, int, int] | None = None,
    class_maps: list[tuple[Path, ClassLegend]],
    polygons: list[tuple[Path, ClassLegend]] = (),
    crs: rasterio.crs.CRS | None,
    title: str = "rsneo",
) -> Path:
    """Write a .qgz (a zip holding one .qgs) that opens the inputs and the styled predictions (on top).

    Outputs in the project's folder are referenced relatively, so the folder can be moved as a whole.
    `input_rgb` picks the inputs' bands (1-based) shown as red, green, blue (default: the first three).
    """
    path = Path(path)
    folder = path.parent.resolve()

    def source(p: Path) -> str:
        p = Path(p).resolve()
        return f"./{p.relative_to(folder).as_posix()}" if p.is_relative_to(folder) else p.as_posix()

    layers: list[ProjectLayer] = []
    for gpkg, legend in polygons:
        layers.append(
            ProjectLayer(
                f"{Path(gpkg).stem} polygons", f"{source(gpkg)}|layername=classes", "polygons", legend
            )
        )
    for cog, legend in class_maps:
        layers.append(ProjectLayer(Path(cog).stem, source(cog), "classes", legend))
    for raster in inputs:
        layers.append(
            ProjectLayer(
                Path(raster).name, source(raster), "input", display=raster_display(raster, input_rgb)
            )
        )
    with (
        atomic.atomic_path(path, "partial.qgz") as partial,
        zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive,
    ):
        archive.writestr(f"{path.stem}.qgs", qgs_document(layers, crs, title))
    return path
