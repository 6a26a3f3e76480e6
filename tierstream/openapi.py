"""The API's OpenAPI 3.1 document, generated from the response models and a route table.

The bodies' schemas come from the pydantic models in tierstream/api_models.py
(``models_json_schema``, nested models as components); each route is one row of ``ROUTES``
below, its parameters declared once. ``python -m tierstream.openapi`` writes
docs/openapi.json; a test checks that the copy matches and that real responses validate
against these schemas.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema

from tierstream import api_models as m
from tierstream.audiences import DEFAULT_PAGE, MAX_PAGE
from tierstream.kpis import DIMENSIONS

COMPONENTS = "#/components/schemas/"


class CompactSchema(GenerateJsonSchema):
    """Pydantic's schemas, shorter: no title on every property (the name says it already),
    and ``"type": ["string", "null"]`` for a nullable scalar rather than an ``anyOf``."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        inner = self.generate_inner(schema["schema"])
        scalar = isinstance(inner.get("type"), str) and inner["type"] != "null"
        if scalar and "enum" not in inner and "const" not in inner:  # those would bar null
            return {**inner, "type": [inner["type"], "null"]}
        return super().nullable_schema(schema)


def component_schemas() -> dict[str, Any]:
    """Every response model's schema, and the models they nest, by name."""
    _, top = models_json_schema(
        [(model, "validation") for model in m.RESPONSE_MODELS],
        ref_template=COMPONENTS + "{model}",
        schema_generator=CompactSchema,
    )
    return dict(top["$defs"])


# ------------------------------------------------------------------ the routes


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" or "query"
    schema: dict[str, Any]
    description: str | None = None

    def to_openapi(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": self.name, "in": self.where}
        spec["required"] = self.where == "path"
        if self.description is not None:
            spec["description"] = self.description
        spec["schema"] = self.schema
        return spec


ID_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 256}
ID_RULES = "1-256 characters, no control characters; percent-encode reserved characters"
CUSTOMER_ID = Param("customer_id", "path", ID_SCHEMA, f"{ID_RULES} (a / is %2F)")
TIER_CUSTOMER_ID = Param(
    "customer_id",
    "path",
    ID_SCHEMA,
    f"{ID_RULES} (an id ending in /tier is looked up with POST /customers/lookup)",
)
ACCOUNT_ID = Param("account_id", "path", ID_SCHEMA, "1-256 characters, no control characters")
AS_OF = Param(
    "as_of",
    "query",
    {"type": "string"},
    "YYYY-MM-DD or an ISO-8601 datetime with offset. Default: now under the wall clock, "
    "else the customer's own clock",
)
KPI_AS_OF = Param(
    "as_of", "query", {"type": "string"}, "YYYY-MM-DD or an ISO-8601 datetime (default: now)"
)
BY = Param(
    "by",
    "query",
    {"type": "string", "enum": list(DIMENSIONS)},
    "the grouping (default tier)",
)
SUPPRESS = Param(
    "suppress",
    "query",
    {"type": "boolean", "default": False},
    "true: later events for this id are dead-lettered (kind erased) instead of starting a "
    "fresh state",
)
LIMIT = Param(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
)
CURSOR = Param(
    "cursor",
    "query",
    {"type": "string"},
    "the previous page's next_cursor (base64url of the last id listed): the page starts "
    "strictly after that id",
)


def _name(what: str, name: str) -> Param:
    return Param(name, "path", {"type": "string"}, f"the {what}'s name, percent-encoded")


# A reply: an Error body with this description, or (body, description) where the body is a
# response model or (media type, schema) for what is not JSON.
Body = type[BaseModel] | tuple[str, dict[str, Any]]
Reply = str | tuple[Body, str]

UNAVAILABLE = "The state store (Redis) did not answer in time"
UNAUTHORIZED = "A token is configured and the request did not carry it"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    summary: str
    replies: Mapping[int, Reply]
    parameters: tuple[Param, ...] = ()
    request: type[BaseModel] | None = None
    public: bool = False  # no token needed (health probes, the dashboard page)


def _members(what: str, path: str, name: str, *, unknown: bool) -> Route:
    replies: dict[int, Reply] = {
        200: (m.Members, f"One page of the {what}'s members"),
        400: "limit or cursor is invalid",
        503: UNAVAILABLE,
    }
    if unknown:
        replies[404] = f"No such {what} in the scoring config"
    summary = f"Customers of one {what}, a page at a time"
    return Route("get", path, summary, replies, (_name(what, name), LIMIT, CURSOR))


def _sizes(of: str) -> Route:
    summary = f"Customers per {of} (from a scan, reused for a few seconds)"
    replies: dict[int, Reply] = {200: (m.Sizes, f"Sizes, configured {of}s first"), 503: UNAVAILABLE}
    return Route("get", f"/{of}s", summary, replies)


ROUTES: tuple[Route, ...] = (
    Route(
        "get",
        "/customers/{customer_id}",
        "One customer's tier, segment, RFM, why, and recent tier changes",
        {
            200: (m.Customer, "The customer"),
            400: "The id breaks the event contract, or bad as_of",
            404: "Unknown customer",
            503: UNAVAILABLE,
        },
        (CUSTOMER_ID, AS_OF),
    ),
    Route(
        "delete",
        "/customers/{customer_id}",
        "Erase the customer: an erasure request on the erasures topic, applied by the "
        "workers in order with the customer's events",
        {
            202: (m.ErasureAccepted, "The request is on the erasures topic"),
            400: "The id breaks the event contract, or bad suppress",
            503: "Kafka did not take the request",
        },
        (CUSTOMER_ID, SUPPRESS),
    ),
    Route(
        "get",
        "/customers/{customer_id}/export",
        "Everything held about the customer (state, history, schedule), as JSON",
        {
            200: (m.CustomerExport, "The customer's data as held"),
            400: "The id breaks the event contract",
            404: "Nothing held about this customer",
            503: UNAVAILABLE,
        },
        (CUSTOMER_ID,),
    ),
    Route(
        "get",
        "/customers/{customer_id}/tier",
        "Support view: tier, VIP or not, service level, segments, why",
        {
            200: (m.CustomerTier, "The customer's tier and service level"),
            400: "The id breaks the event contract",
            404: "Unknown customer",
            503: UNAVAILABLE,
        },
        (TIER_CUSTOMER_ID,),
    ),
    Route(
        "post",
        "/customers/lookup",
        "The support view of up to 1,000 customers in one request",
        {
            200: (m.LookupResults, "One result per id; unknown ids inline with found false"),
            400: "The body is malformed (the error says how)",
            503: UNAVAILABLE,
        },
        request=m.LookupRequest,
    ),
    Route(
        "get",
        "/accounts/{account_id}",
        "One B2B account's tier, RFM summed over its contacts, the contacts, and recent "
        "account changes",
        {
            200: (m.Account, "The account"),
            400: "The id breaks the event contract",
            404: "Unknown account",
            503: UNAVAILABLE,
        },
        (ACCOUNT_ID,),
    ),
    _sizes("tier"),
    _sizes("segment"),
    _members("tier", "/tiers/{tier}/members", "tier", unknown=True),
    _members("segment", "/segments/{segment}/members", "segment", unknown=True),
    _members("behaviour segment", "/behaviours/{label}/members", "label", unknown=False),
    Route(
        "get",
        "/flows",
        "Running totals of every worker: tier and segment flows, changes by cause, event "
        "outcomes, dead letters",
        {200: (m.Flows, "Totals since the first commit"), 503: UNAVAILABLE},
    ),
    Route(
        "get",
        "/model",
        "The published behaviour model (centroids), or null",
        {200: (m.Model, "The model snapshot"), 503: UNAVAILABLE},
    ),
    Route(
        "get",
        "/kpis",
        "KPIs by tier, RFM segment or behaviour: size, revenue and its concentration, AOV, "
        "purchases, retention, churn, lifetime value",
        {
            200: (m.Kpis, "One row per group, and the row of all"),
            400: "Unknown grouping or bad as_of",
            503: UNAVAILABLE,
        },
        (BY, KPI_AS_OF),
    ),
    Route(
        "get",
        "/healthz",
        "Redis PING and a Kafka metadata request (cached about 2 s)",
        {200: (m.Health, "Both reachable"), 503: (m.Health, "Redis or Kafka unreachable")},
        public=True,
    ),
    Route(
        "get",
        "/metrics",
        "Prometheus metrics",
        {200: (("text/plain", {"type": "string"}), "Prometheus text exposition format")},
    ),
    Route(
        "get",
        "/openapi.json",
        "This document",
        {200: (("application/json", {}), "OpenAPI 3.1")},
    ),
    Route(
        "get",
        "/",
        "The dashboard (static page; it asks for the token when one is set)",
        {200: (("text/html", {"type": "string"}), "HTML")},
        public=True,
    ),
)


# --------------------------------------------------------------- the document


def _content(body: Body) -> dict[str, Any]:
    if isinstance(body, tuple):
        media_type, schema = body
        return {media_type: {"schema": schema}}
    return {"application/json": {"schema": {"$ref": COMPONENTS + body.__name__}}}


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": route.summary}
    if route.parameters:
        operation["parameters"] = [param.to_openapi() for param in route.parameters]
    if route.request is not None:
        operation["requestBody"] = {"required": True, "content": _content(route.request)}
    replies = dict(route.replies)
    if route.public:
        operation["security"] = []
    else:
        replies[401] = UNAUTHORIZED
    responses = {}
    for status, reply in sorted(replies.items()):
        body, description = (m.Error, reply) if isinstance(reply, str) else reply
        responses[str(status)] = {"description": description, "content": _content(body)}
    operation["responses"] = responses
    return operation


def build_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tierstream API",
            "version": "1",
            "description": "Customer tiers and why, sizes, flows, pipeline health; erasure "
            "requests and data export. See docs/api.md.",
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Only when TIERSTREAM_API_TOKEN is set",
                }
            },
        },
    }


OPENAPI: dict[str, Any] = build_document()
DOCS_COPY = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def render() -> str:
    return json.dumps(OPENAPI, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS_COPY
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
