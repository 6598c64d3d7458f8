"""The one JSON document each command prints on stdout with `--json`: what it wrote and measured.

Every document has `rsneo` (the version), `command`, `ok` (false when any input failed), `warnings` (also
shown on stderr) and `failed` (inputs reported and skipped). The models below are the schema: docs/products.md
describes it and docs/json_schema.json holds the JSON Schema they generate (`schema_text`); the tests
validate every command's output against them.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Failure(_Strict):
    input: str = Field(description="the input as given (a URL stays intact)")
    error: str = Field(description="what was wrong, the message the command printed")


class _Document(_Strict):
    rsneo: str = Field(description="rsneo version that wrote the document")
    command: str
    ok: bool = Field(description="false when any input failed (the command then exits 2)")
    warnings: list[str] = Field(default_factory=list, description="warnings, also printed on stderr")
    failed: list[Failure] = Field(default_factory=list, description="inputs reported and skipped")


class SegmentFiles(_Strict):
    class_map: str = Field(description="Cloud-Optimised GeoTIFF of class indices with names and colours")
    confidence: str | None = Field(description="COG of the winning probability in percent")
    polygons: str = Field(description="GeoPackage, layer `classes`, areas in hectares")
    style: str = Field(description="QML style of the class map")
    project: str = Field(description="QGIS project (.qgz) with the input and the predictions")
    remote_input: str | None = Field(None, description="the local VRT that streams a remote input")


class SegmentItem(_Strict):
    name: str = Field(description="the input's name: its output subfolder when there are several")
    input: str
    out: str = Field(description="the folder the item's files are in")
    files: SegmentFiles
    areas: dict[str, float] = Field(description="class name -> area (hectares, or pixels: area_unit)")
    area_unit: Literal["ha", "px"]
    labels: dict[str, str] = Field(description="class name -> legend label (read as, untrained)")
    notes: list[str] = Field(description="domain notes: imagery outside what the model was trained on")
    sieve: str | None = Field(None, description="what the minimum mapping unit (--min-area) changed, if any")


class SegmentDocument(_Document):
    command: Literal["segment"] = "segment"
    items: list[SegmentItem]
    summary: str | None = Field(description="CSV of per-item areas (several inputs), else null")


class ChangeFiles(_Strict):
    change_map: str
    polygons: str
    style: str
    project: str
    table: str = Field(description="from-to table (CSV): class, area")
    report: str = Field(description="HTML report")
    remote_inputs: list[str] = Field(default_factory=list, description="local VRTs streaming remote dates")


class ChangeItem(_Strict):
    name: str
    inputs: list[str] = Field(description="the dates, oldest first, as given")
    out: str
    files: ChangeFiles
    changed_area: float
    compared_area: float = Field(description="area valid on every date")
    changed_percent: float
    area_unit: Literal["ha", "px"]
    classes: dict[str, float] = Field(description="change class -> area (the from-to table)")
    summary: str = Field(description="the report's summary sentence")
    notes: list[str]
    sieve: str | None = Field(None, description="what the minimum mapping unit (--min-area) changed, if any")


class ChangeDocument(_Document):
    command: Literal["change"] = "change"
    kind: Literal["change", "buildings"] = Field(description="buildings: `--of buildings`")
    items: list[ChangeItem]
    summary: str | None = Field(description="CSV of per-item changed areas (several inputs), else null")


class AskItem(_Strict):
    name: str
    inputs: list[str]
    question: str
    answer: str
    kind: str = Field(description="what kind of question the answer read (share, change, ...)")
    value: float | None = Field(description="the measured percentage behind the answer, when there is one")
    abstained: bool = Field(description="true when the answer says the model cannot answer this")


class AskDocument(_Document):
    command: Literal["ask"] = "ask"
    items: list[AskItem]
    summary: str | None = Field(description="CSV of the answers (--summary), else null")


class ClassScore(_Strict):
    iou: float | None
    f1: float | None
    pixels: int = Field(description="held-out pixels")
    features: int = Field(description="held-out features")


class LearnDocument(_Document):
    command: Literal["learn"] = "learn"
    model: str = Field(description="the model folder written")
    classes: list[str]
    scores: dict[str, ClassScore] = Field(description="hold-out score per class")
    mean_iou: float | None
    mean_f1: float | None
    features: str = Field(description="what the head reads: all or pixels")
    record: str = Field(description="learn.json in the model folder: everything about the run")


class InfoDocument(_Document):
    command: Literal["info"] = "info"
    rasters: list[dict[str, Any]] = Field(description="per raster: sensor, bands, CRS, grid, statistics")


class SensorsDocument(_Document):
    command: Literal["sensors"] = "sensors"
    sensors: list[dict[str, Any]] = Field(description="per sensor: name, title, units, groups, bands")


class SearchItem(_Strict):
    id: str
    collection: str | None
    datetime: str | None
    bbox: list[float] | None
    assets: dict[str, str] = Field(description="asset key -> href (local path after --download)")


class SearchDocument(_Document):
    command: Literal["search"] = "search"
    stac: str = Field(description="the STAC API searched")
    matched: int
    items: list[SearchItem]
    collection_file: str | None = Field(description="ItemCollection written for segment/change, if any")


DOCUMENTS: dict[str, type[_Document]] = {
    "segment": SegmentDocument, "change": ChangeDocument, "ask": AskDocument, "learn": LearnDocument,
    "info": InfoDocument, "sensors": SensorsDocument, "search": SearchDocument,
}  # fmt: skip


def render(document: _Document) -> str:
    """The document as printed: indented JSON, fields in schema order."""
    return document.model_dump_json(indent=1)


def json_schema(command: str) -> dict[str, Any]:
    """The JSON Schema of `command`'s document (as docs/products.md shows it)."""
    return DOCUMENTS[command].model_json_schema()


def schema_text() -> str:
    """Every command's schema, as one JSON object keyed by command (docs/products.md)."""
    return json.dumps({c: json_schema(c) for c in DOCUMENTS}, indent=1, sort_keys=True)


if __name__ == "__main__":  # python -m rsneo.cli.documents > docs/json_schema.json
    print(schema_text())
