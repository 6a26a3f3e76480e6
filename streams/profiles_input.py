"""Profile updates on the input path: the customer-profiles topic's messages, parsed.

The topic is compacted and keyed by customer id: a value is the customer's traits as a
whole (scoring/profiles.py), a null value (tombstone) deletes them. Anything else that
cannot be used is a dead letter with one line saying why, as for events.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import ValidationError

from scoring.profiles import ProfileUpdate
from streams.deadletters import RawMessage, Rejected, invalid_input, message_value


def parse_profile(message: RawMessage, latest: datetime) -> ProfileUpdate:
    """The update in ``message``, or ``Rejected``. ``latest``: the latest ``updated_at``
    accepted (real time plus the allowance for clock skew)."""
    if message.value is None:
        return _tombstone(message)
    raw = message_value(message)  # the size bound
    try:
        update = ProfileUpdate.model_validate_json(raw)
    except ValidationError as exc:
        if any(err["type"] == "model_type" for err in exc.errors()):
            raise Rejected("not_object", "a profile update must be a JSON object") from None
        raise invalid_input(exc, "invalid_profile") from None
    if message.key is None or message.key != update.customer_id.encode("utf-8"):
        # The key is what compaction keeps the latest value of, and what partitions by.
        raise Rejected("key_mismatch", f"key {message.key!r} is not the customer_id")
    if update.updated_at is None:
        raise Rejected("invalid_profile", "updated_at: required (only a tombstone has none)")
    if update.updated_at > latest:
        raise Rejected("future_timestamp", f"updated_at {update.updated_at} is after {latest}")
    return update


def _tombstone(message: RawMessage) -> ProfileUpdate:
    """A null value: delete the traits of the customer named by the key."""
    try:
        customer_id = (message.key or b"").decode("utf-8")
        return ProfileUpdate.model_validate({"customer_id": customer_id, "traits": None})
    except (UnicodeDecodeError, ValidationError):
        raise Rejected("key_mismatch", f"tombstone key {message.key!r} is no customer id") from None
