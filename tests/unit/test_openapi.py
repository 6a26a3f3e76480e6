"""The OpenAPI document generated from the response models: valid OpenAPI 3.1, current in
docs/, and made of the models (real answers are checked against it in tests/integration)."""

from __future__ import annotations

from typing import Literal

import jsonschema
from openapi_spec_validator import OpenAPIV31SpecValidator
from pydantic import BaseModel

from tierstream import api_models
from tierstream.openapi import (
    DOCS_COPY,
    OPENAPI,
    ROUTES,
    CompactSchema,
    component_schemas,
    render,
)


def test_the_document_is_valid_openapi_3_1():
    errors = [error.message for error in OpenAPIV31SpecValidator(OPENAPI).iter_errors()]
    assert errors == []


def test_the_docs_copy_is_current():
    assert DOCS_COPY.read_text(encoding="utf-8") == render(), (
        "docs/openapi.json is stale: run `python -m tierstream.openapi`"
    )


def test_every_body_schema_is_generated_from_its_model():
    schemas = OPENAPI["components"]["schemas"]
    assert schemas == component_schemas()
    for model in api_models.RESPONSE_MODELS:
        assert model.__name__ in schemas
    referenced = {
        content["schema"]["$ref"].rsplit("/", 1)[1]
        for operation in (op for path in OPENAPI["paths"].values() for op in path.values())
        for response in operation["responses"].values()
        for content in response["content"].values()
        if "$ref" in content["schema"]
    }
    assert referenced <= {model.__name__ for model in api_models.RESPONSE_MODELS}
    assert len({(route.method, route.path) for route in ROUTES}) == len(ROUTES)


def test_a_nullable_enum_or_constant_still_accepts_null():
    # The compact form `"type": [..., "null"]` would bar null when an enum lists the values.
    class Probe(BaseModel):
        kind: Literal["a", "b"] | None
        fixed: Literal["x"] | None
        name: str | None

    schema = Probe.model_json_schema(schema_generator=CompactSchema)
    assert schema["properties"]["name"] == {"type": ["string", "null"]}
    jsonschema.validate({"kind": None, "fixed": None, "name": None}, schema)
    jsonschema.validate({"kind": "a", "fixed": "x", "name": "n"}, schema)
