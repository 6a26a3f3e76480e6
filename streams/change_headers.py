"""Kafka headers of a tier change, so consumers can filter without parsing values.

Every message on ``tier-changes`` carries the same eight UTF-8 headers, in this order;
an absent value (a first tier, no behaviour model, no behaviour) is the empty string.
They are built once per change when it is first sent (the publisher keeps them for a
re-send), from the value itself, so they can never disagree with it.
"""

from __future__ import annotations

from typing import Any

import orjson

# A list: the record builder of aiokafka (a C extension) accepts no tuple.
Headers = list[tuple[str, bytes]]

# Header name -> field of the tier change's value.
HEADER_FIELDS: tuple[tuple[str, str], ...] = (
    ("tier", "new_tier"),
    ("previous_tier", "previous_tier"),
    ("segment", "new_segment"),
    ("previous_segment", "previous_segment"),
    ("behaviour", "new_behaviour"),
    ("previous_behaviour", "previous_behaviour"),
    ("cause", "cause"),
)
ENTITY = ("entity", b"customer")
ACCOUNT_ENTITY = ("entity", b"account")  # a B2B account's change (scoring/accounts.py)


def change_headers(value: bytes) -> Headers:
    """The headers of the tier change whose JSON value is ``value``."""
    try:
        change: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        change = None
    if not isinstance(change, dict):
        change = {}
    entity = ACCOUNT_ENTITY if change.get("entity") == "account" else ENTITY
    return [*((name, _text(change.get(field))) for name, field in HEADER_FIELDS), entity]


def _text(value: Any) -> bytes:
    return b"" if value is None else str(value).encode("utf-8")


def header_dict(headers: Any) -> dict[str, str]:
    """Headers as received from a consumer (name, bytes) pairs, as a dict of text."""
    return {name: (raw or b"").decode("utf-8") for name, raw in headers or ()}
