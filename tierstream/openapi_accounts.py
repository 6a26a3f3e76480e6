"""The OpenAPI path and schema of B2B accounts (tierstream/api_accounts.py)."""

from __future__ import annotations

from typing import Any

from tierstream.openapi_lookup import _ERROR, _UNAUTHORIZED, _UNAVAILABLE, _json, _ref

_NULLABLE_INT = {"type": ["integer", "null"]}
_NULLABLE_STR = {"type": ["string", "null"]}

ACCOUNT_SCHEMAS: dict[str, Any] = {
    "Account": {
        "type": "object",
        "description": "A B2B account's record (docs/contracts.md, account record), summed "
        "over its current contacts, with them and its recent changes",
        "required": [
            "account_id",
            "contacts",
            "frequency",
            "monetary",
            "recency_days",
            "last_purchase_at",
            "first_purchase_at",
            "r",
            "f",
            "m",
            "tier",
            "segment",
            "version",
            "as_of",
            "members",
            "history",
        ],
        "properties": {
            "account_id": {"type": "string"},
            "contacts": {"type": "integer", "minimum": 0},
            "frequency": {"type": "integer"},
            "monetary": {"type": "string", "description": "decimal, base currency"},
            "recency_days": _NULLABLE_INT,
            "last_purchase_at": _NULLABLE_STR,
            "first_purchase_at": _NULLABLE_STR,
            "r": _NULLABLE_INT,
            "f": _NULLABLE_INT,
            "m": _NULLABLE_INT,
            "tier": _NULLABLE_STR,
            "segment": _NULLABLE_STR,
            "engagement": {"type": "object", "additionalProperties": {"type": "string"}},
            "version": {"type": "integer", "minimum": 0},
            "as_of": {"type": "string", "format": "date"},
            "members": {
                "type": "array",
                "description": "the current contacts, by id, with their own tier and segment",
                "items": {
                    "type": "object",
                    "required": ["customer_id", "tier", "segment"],
                    "properties": {
                        "customer_id": {"type": "string"},
                        "tier": _NULLABLE_STR,
                        "segment": _NULLABLE_STR,
                    },
                },
            },
            "history": {"type": "array", "items": _ref("HistoryEntry")},
        },
    },
}

ACCOUNT_PATHS: dict[str, Any] = {
    "/accounts/{account_id}": {
        "get": {
            "summary": "One B2B account's tier, RFM summed over its contacts, the contacts, "
            "and recent account changes",
            "parameters": [
                {
                    "name": "account_id",
                    "in": "path",
                    "required": True,
                    "description": "1-256 characters, no control characters",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 256},
                }
            ],
            "responses": {
                "200": _json(_ref("Account"), "The account"),
                "400": _json(_ERROR, "The id breaks the event contract"),
                "401": _UNAUTHORIZED,
                "404": _json(_ERROR, "Unknown account"),
                "503": _UNAVAILABLE,
            },
        }
    },
}
