"""The OpenAPI paths and schemas of the support lookups (tierstream/api_lookup.py)."""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _ref("Error")
_UNAUTHORIZED = _json(_ERROR, "A token is configured and the request did not carry it")
_UNAVAILABLE = _json(_ERROR, "The state store (Redis) did not answer in time")

LOOKUP_SCHEMAS: dict[str, Any] = {
    "ServiceLevel": {
        "type": "object",
        "description": "How support serves the tier (the scoring config's service_levels)",
        "required": ["response_time", "channel", "owner"],
        "properties": {
            "response_time": {"type": "string", "examples": ["same day"]},
            "channel": {"type": "string", "examples": ["named account manager"]},
            "owner": {"type": "string", "examples": ["account manager"]},
        },
    },
    "CustomerTier": {
        "type": "object",
        "required": [
            "customer_id",
            "tier",
            "is_vip",
            "service_level",
            "segment",
            "behaviour",
            "why",
        ],
        "properties": {
            "customer_id": {"type": "string"},
            "tier": {"type": ["string", "null"]},
            "is_vip": {"type": "boolean", "description": "in the highest tier of the plan"},
            "service_level": {"oneOf": [_ref("ServiceLevel"), {"type": "null"}]},
            "segment": {"type": ["string", "null"]},
            "behaviour": {
                "type": ["string", "null"],
                "description": "the behavioural segment's label, when a model is published",
            },
            "why": {"type": "string"},
        },
    },
    "LookupRequest": {
        "type": "object",
        "required": ["ids"],
        "properties": {
            "ids": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1000,
                "items": {"type": "string", "minLength": 1, "maxLength": 256},
            }
        },
    },
    "LookupResult": {
        "oneOf": [
            {
                "allOf": [
                    _ref("CustomerTier"),
                    {
                        "type": "object",
                        "required": ["found"],
                        "properties": {"found": {"const": True}},
                    },
                ]
            },
            {
                "type": "object",
                "required": ["customer_id", "found", "error"],
                "properties": {
                    "customer_id": {"type": "string"},
                    "found": {"const": False},
                    "error": {"const": "unknown customer"},
                },
            },
        ]
    },
}

_CUSTOMER_ID = {
    "name": "customer_id",
    "in": "path",
    "required": True,
    "description": "1-256 characters, no control characters; percent-encode reserved "
    "characters (an id ending in /tier is looked up with POST /customers/lookup)",
    "schema": {"type": "string", "minLength": 1, "maxLength": 256},
}

LOOKUP_PATHS: dict[str, Any] = {
    "/customers/{customer_id}/tier": {
        "get": {
            "summary": "Support view: tier, VIP or not, service level, segments, why",
            "parameters": [_CUSTOMER_ID],
            "responses": {
                "200": _json(_ref("CustomerTier"), "The customer's tier and service level"),
                "400": _json(_ERROR, "The id breaks the event contract"),
                "401": _UNAUTHORIZED,
                "404": _json(_ERROR, "Unknown customer"),
                "503": _UNAVAILABLE,
            },
        }
    },
    "/customers/lookup": {
        "post": {
            "summary": "The support view of up to 1,000 customers in one request",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("LookupRequest")}},
            },
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["results"],
                        "properties": {
                            "results": {
                                "type": "array",
                                "description": "one per requested id, in order",
                                "items": _ref("LookupResult"),
                            }
                        },
                    },
                    "One result per id; unknown ids inline with found false",
                ),
                "400": _json(_ERROR, "The body is malformed (the error says how)"),
                "401": _UNAUTHORIZED,
                "503": _UNAVAILABLE,
            },
        }
    },
}
