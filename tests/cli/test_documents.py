"""The --json documents (rsneo.cli.documents): a schema that refuses what it does not describe, and the JSON
Schema in docs/json_schema.json is the one the models generate (the documentation cannot drift)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from rsneo.cli.documents import DOCUMENTS, SegmentDocument, render, schema_text

REPO = Path(__file__).resolve().parents[2]


def test_the_documented_schema_is_the_generated_one():
    documented = json.loads((REPO / "docs" / "json_schema.json").read_text())
    assert documented == json.loads(schema_text()), (
        "regenerate: python -m rsneo.cli.documents > docs/json_schema.json"
    )


def test_every_command_has_a_document_with_the_common_fields():
    for command, model in DOCUMENTS.items():
        fields = set(model.model_fields)
        assert {"rsneo", "command", "ok", "warnings", "failed"} <= fields, command
        assert model.model_fields["command"].default == command


def test_a_document_with_an_unknown_or_missing_field_is_refused():
    good = {"rsneo": "0.1.0", "ok": True, "items": [], "summary": None}
    assert json.loads(render(SegmentDocument.model_validate(good)))["command"] == "segment"
    with pytest.raises(ValidationError, match="extra"):
        SegmentDocument.model_validate({**good, "surprise": 1})
    with pytest.raises(ValidationError, match="items"):
        SegmentDocument.model_validate({k: v for k, v in good.items() if k != "items"})
    item = {"name": "a", "input": "a.tif", "out": "o", "areas": {"water": 1.0}, "area_unit": "acres",
            "labels": {}, "notes": [], "files": {"class_map": "c", "confidence": None, "polygons": "p",
                                                 "style": "s", "project": "q"}}  # fmt: skip
    with pytest.raises(ValidationError, match="area_unit"):
        SegmentDocument.model_validate({**good, "items": [item]})
