"""Checking an API answer against its generated schema: the OpenAPI document's component
(the JSON schema a client sees) and the pydantic model it was generated from (which also
parses the dates and times)."""

from __future__ import annotations

from typing import Any

import jsonschema

from tierstream import api_models
from tierstream.openapi import OPENAPI


def assert_valid(schema_name: str, body: Any) -> None:
    """Fail unless ``body`` is a valid ``schema_name`` (a components/schemas name)."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", **OPENAPI}
    jsonschema.Draft202012Validator(schema).validate(body)
    getattr(api_models, schema_name).model_validate(body)
