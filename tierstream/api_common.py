"""The answers every route of the API gives alike: JSON bodies (errors included), the
customer id rules, ``as_of``, a customer's record as of a moment, the configured names."""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any

from aiohttp import web

from scoring.days import utc_day
from scoring.engine import Scorer
from scoring.state import CustomerState
from tierstream import asof

# The event contract's customer id: 1 to 256 characters, no control characters (U+0000-001F).
MAX_ID_LENGTH = 256

# Ids and names are often not ASCII: send them as UTF-8, not as \u escapes.
_dumps = functools.partial(json.dumps, ensure_ascii=False)


def respond(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


def error(status: int, message: str, **details: Any) -> web.Response:
    return respond({"error": message, **details}, status=status)


def invalid_id(customer_id: str) -> str | None:
    """Why ``customer_id`` breaks the event contract's id rules, or None."""
    if not customer_id:
        return "customer id is empty"
    if len(customer_id) > MAX_ID_LENGTH:
        return f"customer id is longer than {MAX_ID_LENGTH} characters"
    if any(ord(ch) < 0x20 for ch in customer_id):
        return "customer id contains control characters"
    return None


def parse_as_of(value: str) -> datetime:
    """``YYYY-MM-DD`` (that UTC day) or an ISO-8601 datetime with offset, in the events'
    range (ValueError otherwise: the caller answers 400, never a 500 from an overflow)."""
    return asof.parse_as_of(value)


def customer_view(
    scorer: Scorer, state: CustomerState, as_of: datetime | None
) -> tuple[dict[str, Any], int]:
    """The state record as of ``as_of`` (None: the state's own clock), why, and how many
    changes bringing it there produced that the worker has not committed yet."""
    view = state.copy()
    pending = 0
    if as_of is not None and (view.clock_day is None or utc_day(as_of) >= view.clock_day):
        pending = len(scorer.advance(view, as_of))
    record = scorer.record(view)
    record["e"] = view.scores.e if view.scores else None
    record["why"] = scorer.explain(view)
    return record, pending


def tier_names(scorer: Scorer) -> list[str]:
    return [level.name for level in scorer.config.tiers.levels]


def segment_names(scorer: Scorer) -> list[str]:
    return list(dict.fromkeys(rule.name for rule in scorer.config.segments))
