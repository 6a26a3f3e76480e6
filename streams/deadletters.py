"""Turning raw input messages into events, or into dead letters that say what was wrong."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from scoring.config import ScoringConfig
from scoring.events import DeadLetter, EngagementEvent, InputEvent, PurchaseEvent

# Larger payloads are refused before parsing: no valid event comes near this.
MAX_EVENT_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None  # the record's Kafka time, in seconds (latency metrics)


class Rejected(Exception):  # a result, not a failure of ours
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def message_value(message: RawMessage) -> bytes:
    """The value of an input message (event or erasure request), or ``Rejected`` when it
    has none or is over the size bound."""
    raw = message.value
    if raw is None:
        raise Rejected("empty", "message has no value (tombstone)")
    if len(raw) > MAX_EVENT_BYTES:
        raise Rejected("oversized", f"{len(raw)} bytes > {MAX_EVENT_BYTES}")
    return raw


def parse_message(
    message: RawMessage,
    kind: type[PurchaseEvent] | type[EngagementEvent],
    config: ScoringConfig,
    latest: datetime,
) -> InputEvent:
    """The event in ``message``, or ``Rejected`` with an error kind and detail.

    ``latest``: the latest acceptable ``occurred_at`` (real time plus an allowance)."""
    raw = message_value(message)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected("not_utf8", str(exc)) from None
    try:
        event = kind.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors()
        if any(err["type"] == "json_invalid" for err in errors):
            raise Rejected("not_json", errors[0]["msg"]) from None
        if any(err["type"] == "model_type" for err in errors):
            raise Rejected("not_object", "an event must be a JSON object") from None
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in errors)
        raise Rejected("invalid_event", detail) from None
    if message.key is None or message.key != event.customer_id.encode("utf-8"):
        # Keys drive partitioning, and partitioning keeps one customer's state in one shard.
        raise Rejected("key_mismatch", f"key {message.key!r} is not the customer_id")
    if isinstance(event, PurchaseEvent) and event.currency != config.base_currency:
        if event.currency not in config.fx_rates:
            raise Rejected("unknown_currency", f"no exchange rate for {event.currency}")
    if event.occurred_at > latest:
        raise Rejected("future_timestamp", f"occurred_at {event.occurred_at} is after {latest}")
    return event


def invalid_input(exc: ValidationError, kind: str) -> Rejected:
    """The rejection of a value that failed validation: ``not_json`` when it is no JSON,
    else ``kind`` with every problem named on one line."""
    errors = exc.errors()
    if any(err["type"] in ("json_invalid", "utf8_decode") for err in errors):
        return Rejected("not_json", errors[0]["msg"])
    detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in errors)
    return Rejected(kind, detail)


def dead_letter(message: RawMessage, reason: Rejected, received_at: datetime) -> DeadLetter:
    return DeadLetter(
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        key_base64=None if message.key is None else base64.b64encode(message.key).decode(),
        payload_base64=base64.b64encode(message.value or b"").decode(),
        error_kind=reason.kind,
        error=reason.detail[:2000],
        received_at=received_at,
    )
