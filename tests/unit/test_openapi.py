"""The OpenAPI document generated from the response models: valid OpenAPI 3.1, current in
docs/, and made of the models (real answers are checked against it in tests/integration)."""

from __future__ import annotations

import re
from typing import Literal

import jsonschema
from openapi_spec_validator import OpenAPIV31SpecValidator
from pydantic import BaseModel

from scoring.engine import Scorer
from tierstream import api_models
from tierstream.api import create_api
from tierstream.openapi import (
    DOCS_COPY,
    OPENAPI,
    ROUTES,
    CompactSchema,
    component_schemas,
    render,
)
from tierstream.settings import Settings, load_scoring_config
from tierstream.stores.redis import RedisStore


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


def test_the_route_table_lists_exactly_what_the_app_serves():
    # Nothing is connected: the app is built, never started.
    store = RedisStore("redis://127.0.0.1:1/0", partitions=2)
    settings = Settings(kafka_bootstrap="127.0.0.1:1")
    app = create_api(store, Scorer(load_scoring_config(None)), settings)

    def shape(path: str) -> str:  # path parameter names may differ: {tier} and {name}
        return re.sub(r"\{[^}]*\}", "{}", path)

    served = {
        (route.method.lower(), shape(route.resource.canonical))
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {
        (method, shape(path)) for path, item in OPENAPI["paths"].items() for method in item
    }
    assert served == documented
