"""The OpenAPI paths and schemas of the audience member routes (tierstream/api_audiences.py)."""

from __future__ import annotations

from typing import Any

from tierstream.audiences import DEFAULT_PAGE, MAX_PAGE


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _ref("Error")

AUDIENCE_SCHEMAS: dict[str, Any] = {
    "Members": {
        "type": "object",
        "description": "One page of an audience's members, in the byte order of their UTF-8 ids",
        "required": ["kind", "name", "size", "members", "next_cursor"],
        "properties": {
            "kind": {"enum": ["tier", "segment", "behaviour"]},
            "name": {"type": "string"},
            "size": {
                "type": "integer",
                "minimum": 0,
                "description": "customers in the audience now (kept by every commit)",
            },
            "members": {"type": "array", "items": {"type": "string"}},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "pass as cursor for the next page; null: this is the last",
            },
        },
    },
}

_PAGING = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
    },
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "the previous page's next_cursor (base64url of the last id listed): "
        "the page starts strictly after that id",
        "schema": {"type": "string"},
    },
]


def _members(what: str, parameter: str, unknown: bool) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": _json(_ref("Members"), f"One page of the {what}'s members"),
        "400": _json(_ERROR, "limit or cursor is invalid"),
        "401": _json(_ERROR, "A token is configured and the request did not carry it"),
        "503": _json(_ERROR, "The state store (Redis) did not answer in time"),
    }
    if unknown:
        responses["404"] = _json(_ERROR, f"No such {what} in the scoring config")
    path_parameter = {
        "name": parameter,
        "in": "path",
        "required": True,
        "description": f"the {what}'s name, percent-encoded",
        "schema": {"type": "string"},
    }
    return {
        "get": {
            "summary": f"Customers of one {what}, a page at a time",
            "parameters": [path_parameter, *_PAGING],
            "responses": responses,
        }
    }


AUDIENCE_PATHS: dict[str, Any] = {
    "/tiers/{tier}/members": _members("tier", "tier", unknown=True),
    "/segments/{segment}/members": _members("segment", "segment", unknown=True),
    "/behaviours/{label}/members": _members("behaviour segment", "label", unknown=False),
}
