"""Erasure requests on the input path: parsing them, and the dead letter of a suppressed id."""

from __future__ import annotations

from datetime import datetime

from pydantic import ValidationError

from scoring.events import DeadLetter
from streams.deadletters import RawMessage, Rejected, invalid_input, message_value
from tierstream.erasure import ERASED_KIND, ErasureRequest


def parse_erasure(message: RawMessage) -> ErasureRequest:
    """The request in ``message``, or ``Rejected`` (as for events: same kinds of error)."""
    raw = message_value(message)
    try:
        request = ErasureRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid_input(exc, "invalid_event") from None
    if message.key is None or message.key != request.customer_id.encode("utf-8"):
        # The key puts the request in the customer's partition, hence in its shard.
        raise Rejected("key_mismatch", f"key {message.key!r} is not the customer_id")
    return request


def erased_dead_letter(message: RawMessage, received_at: datetime) -> DeadLetter:
    """An event for a customer erased with suppression. Neither key nor payload is kept:
    they hold the very data the customer asked to have erased."""
    return DeadLetter(
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        key_base64=None,
        payload_base64="",
        error_kind=ERASED_KIND,
        error="the customer was erased with suppression; the event is not applied",
        received_at=received_at,
    )
