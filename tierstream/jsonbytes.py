"""Compact JSON bytes, fast: orjson where it gives the very bytes ``json.dumps`` would.

The worker encodes every stored state and every tier change; orjson does that several
times faster than the standard library. For the JSON types used here (str, int, None,
lists and dicts with str keys) its output equals ``json.dumps(obj, separators=(",", ":"),
ensure_ascii=False)`` encoded as UTF-8, so nothing stored or published changes. Where
ASCII-only output is asked for (``ensure_ascii=True``, the tier-changes encoding) and the
text is not all ASCII, or orjson refuses a value (a lone surrogate), the standard library
writes it, as before.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def compact_json(obj: Any, *, ascii_only: bool = False) -> bytes:
    try:
        data = orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):
        data = None
    if data is not None and (not ascii_only or data.isascii()):
        return data
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")
