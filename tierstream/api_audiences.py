"""Audience members, a page at a time (tierstream/audiences.py keeps the sets).

    GET /tiers/{tier}/members          customers of one tier
    GET /segments/{segment}/members    customers of one RFM segment
    GET /behaviours/{label}/members    customers of one behaviour segment (by label)

Query: ``limit`` (1 to MAX_PAGE, default DEFAULT_PAGE) and ``cursor`` (the previous page's
``next_cursor``). Body: ``{"kind", "name", "size", "members": [ids], "next_cursor"}``;
``next_cursor`` is null on the last page. Members come in the byte order of their UTF-8
ids; the size is the audience's count now (one count per shard), not a scan.
"""

from __future__ import annotations

from typing import Any, cast

from aiohttp import web

from tierstream.api_common import error, respond, segment_names, tier_names
from tierstream.api_state import STATE_KEY
from tierstream.audiences import (
    DEFAULT_PAGE,
    MAX_PAGE,
    AudienceStore,
    BadCursor,
    decode_cursor,
    encode_cursor,
)

# route prefix -> audience kind
ROUTES = {"tiers": "tier", "segments": "segment", "behaviours": "behaviour"}


def add_audience_routes(app: web.Application) -> None:
    for prefix, kind in ROUTES.items():
        app.router.add_get(rf"/{prefix}/{{name:[^/]+}}/members", _handler(kind))


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_PAGE}")
    return int(raw)


def _handler(kind: str) -> Any:
    async def members(request: web.Request) -> web.Response:
        api = request.app[STATE_KEY]
        name = request.match_info["name"]
        try:
            limit = parse_limit(request.query.get("limit"))
            cursor = request.query.get("cursor")
            after = decode_cursor(cursor) if cursor is not None else None
        except (ValueError, BadCursor) as exc:
            return error(400, str(exc))
        known = {"tier": tier_names, "segment": segment_names}.get(kind)
        if known is not None and name not in known(await api.current_scorer()):
            return error(404, f"unknown {kind}", name=name)
        store = cast(AudienceStore, api.store)

        def read() -> tuple[int, list[str]]:
            return store.audience_size(kind, name), store.audience_page(kind, name, after, limit)

        size, page = await api.call(read)
        next_cursor = encode_cursor(page[-1]) if len(page) == limit else None
        return respond(
            {"kind": kind, "name": name, "size": size, "members": page, "next_cursor": next_cursor}
        )

    return members
