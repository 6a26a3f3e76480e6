"""How a customer's state is stored as a Redis value: compact JSON of
``CustomerState.to_dict()`` without the id, which the key already holds.

Public so that what measures the stored size (bench/profile.py) encodes exactly what the
store writes.
"""

from __future__ import annotations

import orjson

from scoring.state import CustomerState
from tierstream.jsonbytes import compact_json


def encode_state(state: CustomerState) -> bytes:
    raw = state.to_dict()
    del raw["c"]
    return compact_json(raw)


def decode_state(customer_id: str, data: bytes) -> CustomerState:
    raw = orjson.loads(data)
    raw["c"] = customer_id
    return CustomerState.from_dict(raw)
