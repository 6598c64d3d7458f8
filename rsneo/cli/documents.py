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

from rsneo.version import __version__


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


class ClassAccuracy(_Strict):
    iou: float | None = Field(description="null where the class is neither in the reference nor predicted")
    f1: float | None
    precision: float | None
    recall: float | None
    support: int = Field(description="reference pixels of the class")
    predicted: int = Field(description="pixels predicted as the class")


class MapScores(_Strict):
    confusion: list[list[int]] = Field(
        description="pixels; rows: reference classes, columns: predicted_classes"
    )
    overall_accuracy: float | None
    kappa: float | None
    mean_iou: float | None = Field(description="over the classes present in the reference")
    mean_f1: float | None
    per_class: dict[str, ClassAccuracy]


class PixelCounts(_Strict):
    scored: int
    unpredicted: int = Field(description="labelled pixels the map left as nodata (counted as wrong)")


class SampleScores(MapScores):
    name: str
    unpredicted: int


class EvaluateDocument(_Document, MapScores):
    command: Literal["evaluate"] = "evaluate"
    model: str = Field(description="the model folder, or `bundled`")
    data: str
    masks: str | None
    split: str | None
    task: Literal["change", "segmentation"]
    classes: list[str] = Field(description="reference classes (confusion rows)")
    predicted_classes: list[str] = Field(description="predicted classes (confusion columns)")
    samples: int
    pixels: PixelCounts
    baselines: dict[str, MapScores] = Field(description="training-free methods on the same pixels (change)")
    per_sample: list[SampleScores]
    notes: list[str]


class Interval(_Strict):
    estimate: float | None
    ci95: float | None = Field(description="half-width of the 95% confidence interval")


class ReferenceSample(_Strict):
    features: int
    used: int = Field(description="features inside the map")
    outside_map: int
    geometry: list[str] = Field(description="geometry types of the reference features")


class AssessDocument(_Document):
    command: Literal["assess"] = "assess"
    map: str
    reference: str
    class_field: str
    unit: Literal["ha", "px"]
    classes: list[str]
    sample: ReferenceSample
    error_matrix: list[list[int]] = Field(description="sample counts; rows: map, columns: reference")
    area_weighted_error_matrix: list[list[float]] = Field(description="shares of the assessed area")
    mapped_area: dict[str, float]
    overall_accuracy: Interval
    users_accuracy: dict[str, Interval]
    producers_accuracy: dict[str, Interval]
    area: dict[str, Interval] = Field(description="error-adjusted area per class (unit)")
    area_share: dict[str, Interval]
    unsampled_classes: list[str] = Field(description="map classes without a reference sample, left out")
    z: float = Field(description="normal quantile of the intervals (1.96)")


class FinetuneDocument(_Document):
    command: Literal["finetune"] = "finetune"
    task: Literal["change", "segment"]
    model: str = Field(description="the model folder written")
    trained: str = Field(description="what learnt beside the head (--train)")
    samples: int = Field(description="labelled samples (pairs or images)")
    validation: str = Field(description="how the validation samples were chosen")
    scores: dict[str, float | None] = Field(description="validation: f1, iou, precision, recall, kappa, ...")
    class_scores: dict[str, dict[str, float | None]] = Field(description="segmentation: per class iou, f1")
    epochs: int
    best_epoch: int | None = Field(description="the epoch whose head was kept, counted from 1")
    cpu_seconds: float
    continued: bool = Field(description="the head continued the starting folder's fine-tuned head")
    abstention: dict[str, float] | None = Field(
        default=None,
        description='segmentation: "none of these" calibrated on the validation pixels: none_threshold (the '
        "cosine now), before (the threshold before), share_before (of the labelled validation pixels it "
        "abstained on)",
    )
    record: str = Field(description="finetune.json in the model folder")


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
    "evaluate": EvaluateDocument, "assess": AssessDocument, "finetune": FinetuneDocument,
    "info": InfoDocument, "sensors": SensorsDocument, "search": SearchDocument,
}  # fmt: skip


def render(document: _Document) -> str:
    """The document as printed: indented JSON, fields in schema order."""
    return document.model_dump_json(indent=1)


def completed(command: str, warnings: list[str], **fields: Any) -> str:
    """The rendered document of a command that ran on all its inputs (`ok`, nothing failed), checked against
    its model: a field the schema does not describe is an error here, not in the user's script."""
    return render(DOCUMENTS[command](rsneo=__version__, ok=True, warnings=warnings, **fields))


def json_schema(command: str) -> dict[str, Any]:
    """The JSON Schema of `command`'s document (as docs/products.md shows it)."""
    return DOCUMENTS[command].model_json_schema()


def schema_text() -> str:
    """Every command's schema, as one JSON object keyed by command (docs/products.md)."""
    return json.dumps({c: json_schema(c) for c in DOCUMENTS}, indent=1, sort_keys=True)


if __name__ == "__main__":  # python -m rsneo.cli.documents > docs/json_schema.json
    print(schema_text())
