"""The API's OpenAPI 3.1 document, written by hand next to the code it describes.

``python -m tierstream.openapi`` writes docs/openapi.json; a test checks that the copy
matches and that real responses validate against these schemas.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tierstream.openapi_accounts import ACCOUNT_PATHS, ACCOUNT_SCHEMAS
from tierstream.openapi_audiences import AUDIENCE_PATHS, AUDIENCE_SCHEMAS
from tierstream.openapi_lookup import LOOKUP_PATHS, LOOKUP_SCHEMAS

NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}
NULLABLE_SCORE: dict[str, Any] = {"type": ["integer", "null"], "minimum": 1, "maximum": 5}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    "401": _json(_ref("Error"), "A token is configured and the request did not carry it"),
    "503": _json(_ref("Error"), "The state store (Redis) did not answer in time"),
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "detail": {"type": "string"},
            "customer_id": {"type": "string"},
        },
    },
    "HistoryEntry": {
        "type": "object",
        "description": "One recent tier change (the fields of the tier-changes event, "
        "without reason and rfm)",
        "required": [
            "event_id",
            "version",
            "occurred_at",
            "cause",
            "previous_tier",
            "new_tier",
            "previous_segment",
            "new_segment",
        ],
        "properties": {
            "event_id": {"type": "string", "description": "as on the tier-changes topic"},
            "version": {"type": "integer", "minimum": 1},
            "occurred_at": {"type": "string", "format": "date-time"},
            "cause": {
                "enum": [
                    "purchase",
                    "refund",
                    "engagement",
                    "profile",
                    "inactivity",
                    "threshold_update",
                    "model_update",
                    "config_update",
                    "erasure",
                ]
            },
            "previous_tier": NULLABLE_STRING,
            "new_tier": NULLABLE_STRING,
            "previous_segment": NULLABLE_STRING,
            "new_segment": NULLABLE_STRING,
        },
    },
    "Customer": {
        "type": "object",
        "description": "The SPEC state record as of `as_of`, why, and recent tier changes",
        "required": [
            "customer_id",
            "frequency",
            "monetary",
            "recency_days",
            "last_purchase_at",
            "first_purchase_at",
            "r",
            "f",
            "m",
            "e",
            "tier",
            "segment",
            "engagement",
            "version",
            "as_of",
            "why",
            "pending_changes",
            "history",
        ],
        "properties": {
            "customer_id": {"type": "string"},
            "frequency": {"type": "integer", "description": "purchases in the window"},
            "monetary": {"type": "string", "description": "net amount in the window (decimal)"},
            "recency_days": {"type": ["integer", "null"]},
            "last_purchase_at": {"type": ["string", "null"], "format": "date-time"},
            "first_purchase_at": {"type": ["string", "null"], "format": "date-time"},
            "r": NULLABLE_SCORE,
            "f": NULLABLE_SCORE,
            "m": NULLABLE_SCORE,
            "e": {**NULLABLE_SCORE, "description": "engagement score"},
            "tier": NULLABLE_STRING,
            "segment": NULLABLE_STRING,
            "engagement": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "engagement kind -> summed weight in the window (decimal)",
            },
            "traits": {
                "type": "object",
                "additionalProperties": {"type": ["string", "boolean"]},
                "description": "the customer's traits from the customer-profiles topic, when "
                "any (numbers as decimal strings); docs/custom-criteria.md",
            },
            "version": {"type": "integer", "minimum": 0},
            "as_of": {"type": "string", "format": "date"},
            "why": {"type": "string", "description": "the tier and segment rules that apply"},
            "pending_changes": {
                "type": "integer",
                "minimum": 0,
                "description": "changes due by as_of that the worker has not committed yet",
            },
            "history": {"type": "array", "items": _ref("HistoryEntry")},
            "p_alive": {
                "type": ["number", "null"],
                "description": "BG/NBD probability the customer is still active (null: no "
                "lifetime value model published, or no purchase); docs/clv.md",
            },
            "clv_12m": {
                "type": ["number", "null"],
                "description": "expected net value of the next 365 days (BG/NBD x Gamma-Gamma)",
            },
            "clv_model_version": {"type": ["integer", "null"]},
            "behaviour": {
                "type": "object",
                "description": "behavioural segment under the published model, if any",
                "required": ["segment_id", "label", "model_version"],
                "properties": {
                    "segment_id": {"type": "integer"},
                    "label": {"type": "string"},
                    "model_version": {"type": "integer"},
                },
            },
        },
    },
    "KpiRow": {
        "type": "object",
        "description": "KPIs of one group (docs/kpis.md defines each)",
        "required": [
            "group",
            "customers",
            "customer_share",
            "revenue",
            "revenue_share",
            "top20_revenue_share",
            "average_order_value",
            "purchases_per_customer",
            "previous_buyers",
            "retained",
            "retention",
            "churn_rate",
            "mean_p_alive",
            "mean_clv_12m",
        ],
        "properties": {
            "group": {"type": "string"},
            "customers": {"type": "integer", "minimum": 0},
            "customer_share": {"type": "number"},
            "revenue": {"type": "string", "description": "net revenue of the KPI window"},
            "revenue_share": {"type": ["number", "null"]},
            "top20_revenue_share": {"type": ["number", "null"]},
            "average_order_value": {"type": ["string", "null"]},
            "purchases_per_customer": {"type": "number"},
            "previous_buyers": {"type": "integer", "minimum": 0},
            "retained": {"type": "integer", "minimum": 0},
            "retention": {"type": ["number", "null"]},
            "churn_rate": {"type": ["number", "null"]},
            "mean_p_alive": {"type": ["number", "null"]},
            "mean_clv_12m": {"type": ["number", "null"]},
        },
    },
    "Kpis": {
        "type": "object",
        "required": ["by", "as_of", "period_days", "customers", "unplaced", "groups", "all"],
        "properties": {
            "by": {"type": "string", "enum": ["tier", "segment", "behaviour"]},
            "as_of": {"type": "string", "format": "date"},
            "period_days": {"type": "integer", "minimum": 1},
            "customers": {"type": "integer"},
            "unplaced": {"type": "integer"},
            "skipped": {"type": "integer"},
            "segment_model_version": {"type": ["integer", "null"]},
            "clv_model_version": {"type": ["integer", "null"]},
            "groups": {"type": "array", "items": {"$ref": "#/components/schemas/KpiRow"}},
            "all": {"$ref": "#/components/schemas/KpiRow"},
            "computed_at": {"type": "string"},
        },
    },
    "SizeRow": {
        "type": "object",
        "required": ["name", "customers"],
        "properties": {"name": {"type": "string"}, "customers": {"type": "integer"}},
    },
    "Sizes": {
        "type": "object",
        "required": [
            "customers",
            "computed_at",
            "age_seconds",
            "max_age_seconds",
            "scan_seconds",
            "method",
            "unplaced",
        ],
        "properties": {
            "customers": {"type": "integer"},
            "computed_at": {"type": "string", "format": "date-time"},
            "age_seconds": {"type": "number"},
            "max_age_seconds": {"type": "number"},
            "scan_seconds": {"type": "number"},
            "method": {
                "enum": ["scan", "counts"],
                "description": "scan: counted from every state; counts: the running sizes "
                "the commit keeps (a store marked by tierstream audience --rebuild)",
            },
            "unplaced": {"type": "integer", "description": "customers with no tier/segment"},
            "tiers": {"type": "array", "items": _ref("SizeRow")},
            "segments": {"type": "array", "items": _ref("SizeRow")},
        },
    },
    "Flow": {
        "type": "object",
        "required": ["from", "to", "changes"],
        "properties": {
            "from": NULLABLE_STRING,
            "to": NULLABLE_STRING,
            "changes": {"type": "integer"},
        },
    },
    "Flows": {
        "type": "object",
        "required": [
            "tiers",
            "segments",
            "tier_flows",
            "segment_flows",
            "changes_by_cause",
            "dead_letters_by_kind",
            "events",
            "totals",
            "read_at",
        ],
        "properties": {
            "tiers": {"type": "array", "items": {"type": "string"}},
            "segments": {"type": "array", "items": {"type": "string"}},
            "tier_flows": {"type": "array", "items": _ref("Flow")},
            "segment_flows": {"type": "array", "items": _ref("Flow")},
            "behaviour_flows": {
                "type": "array",
                "items": _ref("Flow"),
                "description": "moves between behavioural segments (labels)",
            },
            "changes_by_cause": {"type": "object", "additionalProperties": {"type": "integer"}},
            "dead_letters_by_kind": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
            },
            "events": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
                "description": "applied, duplicate, outside_window, rescored",
            },
            "totals": {
                "type": "object",
                "required": ["changes", "dead_letters", "events"],
                "properties": {
                    "changes": {"type": "integer"},
                    "dead_letters": {"type": "integer"},
                    "events": {"type": "integer"},
                },
            },
            "read_at": {"type": "string", "format": "date-time"},
        },
    },
    "Model": {
        "type": "object",
        "required": ["model"],
        "properties": {
            "model": {
                "description": "the snapshot (format tierstream.segments/1), or null",
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": [
                            "format",
                            "version",
                            "created_at",
                            "feature_names",
                            "mean",
                            "scale",
                            "segments",
                        ],
                        "properties": {
                            "format": {"type": "string"},
                            "version": {"type": "integer"},
                            "created_at": {"type": "string", "format": "date-time"},
                            "n_seen": {"type": "integer"},
                            "feature_names": {"type": "array", "items": {"type": "string"}},
                            "mean": {"type": "array", "items": {"type": "number"}},
                            "scale": {"type": "array", "items": {"type": "number"}},
                            "segments": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["segment_id", "label", "centroid", "share"],
                                    "properties": {
                                        "segment_id": {"type": "integer"},
                                        "label": {"type": "string"},
                                        "centroid": {
                                            "type": "array",
                                            "items": {"type": "number"},
                                        },
                                        "share": {"type": "number"},
                                        "spread": {"type": "number"},
                                    },
                                },
                            },
                        },
                    },
                ],
            }
        },
    },
    "Check": {
        "type": "object",
        "required": ["ok", "detail"],
        "properties": {
            "ok": {"type": "boolean"},
            "detail": {"type": "string"},
            "seconds": {"type": "number"},
            "age_seconds": {"type": "number", "description": "Kafka answers are reused ~2 s"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "redis", "kafka"],
        "properties": {
            "status": {"enum": ["ok", "unavailable"]},
            "redis": _ref("Check"),
            "kafka": _ref("Check"),
        },
    },
}


SCHEMAS.update(LOOKUP_SCHEMAS)
SCHEMAS.update(AUDIENCE_SCHEMAS)
SCHEMAS.update(ACCOUNT_SCHEMAS)


def _get(
    summary: str,
    ok: dict[str, Any],
    *,
    public: bool = False,
    responses: dict[str, Any] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **(responses or {})}}
    if public:
        operation["security"] = []
    else:
        operation["responses"]["401"] = ERRORS["401"]
    return {"get": operation}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "tierstream API",
        "version": "1",
        "description": "Customer tiers and why, sizes, flows, pipeline health; erasure "
        "requests and data export. "
        "See docs/api.md.",
    },
    "servers": [{"url": "http://127.0.0.1:8080"}],
    "security": [{"bearer": []}],
    "paths": {
        **LOOKUP_PATHS,
        **AUDIENCE_PATHS,
        **ACCOUNT_PATHS,
        "/customers/{customer_id}": {
            "get": {
                "summary": "One customer's tier, segment, RFM, why, and recent tier changes",
                "parameters": [
                    {
                        "name": "customer_id",
                        "in": "path",
                        "required": True,
                        "description": "1-256 characters, no control characters; "
                        "percent-encode reserved characters (a / is %2F)",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 256},
                    },
                    {
                        "name": "as_of",
                        "in": "query",
                        "required": False,
                        "description": "YYYY-MM-DD or an ISO-8601 datetime with offset. "
                        "Default: now under the wall clock, else the customer's own clock",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _json(_ref("Customer"), "The customer"),
                    "400": _json(_ref("Error"), "The id breaks the event contract, or bad as_of"),
                    "401": ERRORS["401"],
                    "404": _json(_ref("Error"), "Unknown customer"),
                    "503": ERRORS["503"],
                },
            }
        },
        "/tiers": _get(
            "Customers per tier (from a scan, reused for a few seconds)",
            _json(_ref("Sizes"), "Sizes, configured tiers first"),
            responses={"503": ERRORS["503"]},
        ),
        "/segments": _get(
            "Customers per segment (from a scan, reused for a few seconds)",
            _json(_ref("Sizes"), "Sizes, configured segments first"),
            responses={"503": ERRORS["503"]},
        ),
        "/flows": _get(
            "Running totals of every worker: tier and segment flows, changes by cause, "
            "event outcomes, dead letters",
            _json(_ref("Flows"), "Totals since the first commit"),
            responses={"503": ERRORS["503"]},
        ),
        "/model": _get(
            "The published behavioural segment model (centroids), or null",
            _json(_ref("Model"), "The model snapshot"),
            responses={"503": ERRORS["503"]},
        ),
        "/kpis": {
            "get": {
                "summary": "KPIs by tier, RFM segment or behaviour: size, revenue and its "
                "concentration, AOV, purchases, retention, churn, lifetime value",
                "parameters": [
                    {
                        "name": "by",
                        "in": "query",
                        "required": False,
                        "description": "the grouping (default tier)",
                        "schema": {"type": "string", "enum": ["tier", "segment", "behaviour"]},
                    },
                    {
                        "name": "as_of",
                        "in": "query",
                        "required": False,
                        "description": "YYYY-MM-DD or an ISO-8601 datetime (default: now)",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _json(_ref("Kpis"), "One row per group, and the row of all"),
                    "400": _json(_ref("Error"), "Unknown grouping or bad as_of"),
                    "401": ERRORS["401"],
                    "503": ERRORS["503"],
                },
            }
        },
        "/healthz": _get(
            "Redis PING and a Kafka metadata request (cached about 2 s)",
            _json(_ref("Health"), "Both reachable"),
            public=True,
            responses={"503": _json(_ref("Health"), "Redis or Kafka unreachable")},
        ),
        "/metrics": _get(
            "Prometheus metrics",
            {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
        ),
        "/openapi.json": _get(
            "This document",
            {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {}}}},
        ),
        "/": _get(
            "The dashboard (static page; it asks for the token when one is set)",
            {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
            public=True,
        ),
    },
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "Only when TIERSTREAM_API_TOKEN is set",
            }
        },
    },
}

# The privacy routes (tierstream/api_privacy.py): erasure and the right of access.
_CUSTOMER_ID = OPENAPI["paths"]["/customers/{customer_id}"]["get"]["parameters"][0]
OPENAPI["paths"]["/customers/{customer_id}"]["delete"] = {
    "summary": "Erase the customer: an erasure request on the erasures topic, applied by the "
    "workers in order with the customer's events",
    "parameters": [
        _CUSTOMER_ID,
        {
            "name": "suppress",
            "in": "query",
            "required": False,
            "description": "true: later events for this id are dead-lettered (kind erased) "
            "instead of starting a fresh state",
            "schema": {"type": "boolean", "default": False},
        },
    ],
    "responses": {
        "202": _json(
            {
                "type": "object",
                "required": ["event_id", "customer_id", "requested_at", "status"],
                "properties": {
                    "event_id": {"type": "string"},
                    "customer_id": {"type": "string"},
                    "requested_at": {"type": "string", "format": "date-time"},
                    "suppress": {"type": "boolean"},
                    "topic": {"type": "string"},
                    "partition": {"type": "integer"},
                    "offset": {"type": "integer"},
                    "status": {"const": "accepted"},
                },
            },
            "The request is on the erasures topic",
        ),
        "400": _json(_ref("Error"), "The id breaks the event contract, or bad suppress"),
        "401": ERRORS["401"],
        "503": _json(_ref("Error"), "Kafka did not take the request"),
    },
}
OPENAPI["paths"]["/customers/{customer_id}/export"] = {
    "get": {
        "summary": "Everything held about the customer (state, history, schedule), as JSON",
        "parameters": [_CUSTOMER_ID],
        "responses": {
            "200": _json({"type": "object"}, "The customer's data as held"),
            "400": _json(_ref("Error"), "The id breaks the event contract"),
            "401": ERRORS["401"],
            "404": _json(_ref("Error"), "Nothing held about this customer"),
            "503": ERRORS["503"],
        },
    }
}

DOCS_COPY = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def render() -> str:
    return json.dumps(OPENAPI, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS_COPY
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
