"""Compact JSON bytes, fast: orjson where it gives the very bytes ``json.dumps`` would.

The worker encodes every stored state and every tier change; orjson does that several
times faster than the standard library. For the JSON types used here (str, int, None,
lists and dicts with str keys) its output equals ``json.dumps(obj, separators=(",", ":"),
ensure_ascii=False)`` encoded as UTF-8, so nothing stored or published changes. Where
ASCII-only output is asked for (``ensure_ascii=True``, the tier-changes encoding), the
non-ASCII characters (and DEL) of orjson's output are escaped the way ``json.dumps`` escapes them
(``\\uXXXX``, surrogate pairs beyond the BMP). Where orjson refuses a value (a lone
surrogate, an integer beyond 64 bits), the standard library writes it, as before.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# What json.dumps(ensure_ascii=True) escapes beyond orjson: DEL and everything non-ASCII.
_NON_ASCII = re.compile(r"[^\x00-\x7e]")
_NON_ASCII_BYTES = re.compile(rb"[\x7f-\xff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"


def compact_json(obj: Any, *, ascii_only: bool = False) -> bytes:
    try:
        data = orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=ascii_only)
        return text.encode("utf-8", "surrogatepass")
    if ascii_only and _NON_ASCII_BYTES.search(data):
        # Only string contents can hold non-ASCII, and a non-ASCII character never needs
        # any other escaping, so escaping each one alone is what json.dumps does.
        return _NON_ASCII.sub(_escape, data.decode("utf-8")).encode("ascii")
    return data
