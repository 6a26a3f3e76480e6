"""The outbox entries: what a commit queues for publishing, one ``bytes`` each.

An entry is a destination byte, a key, NUL and the value. Customer ids cannot hold NUL
(the event contract forbids control characters), so the split is unambiguous. The worker's
publisher (streams/publisher.py) and the repartition tool decode them.
"""

from __future__ import annotations

from datetime import datetime

from scoring.accounts import ContributionUpdate
from scoring.engine import Change
from scoring.events import DeadLetter
from tierstream.jsonbytes import compact_json

# A tier change, keyed by customer id, for the tier-changes topic.
CHANGE_ENTRY = b"C"
# A dead letter (no key), for the dead-letter topic.
DEAD_LETTER_ENTRY = b"D"
# A contribution update for the account step, keyed by account id (streams/accounts.py).
CONTRIBUTION_ENTRY = b"A"


def encode_change(change: Change, emitted_at: datetime) -> bytes:
    value = compact_json(change.to_json(emitted_at), ascii_only=True)
    return CHANGE_ENTRY + change.customer_id.encode("utf-8") + b"\x00" + value


def encode_dead_letter(letter: DeadLetter) -> bytes:
    return DEAD_LETTER_ENTRY + b"\x00" + letter.model_dump_json().encode("utf-8")


def encode_contribution(update: ContributionUpdate) -> bytes:
    value = compact_json(update.to_json(), ascii_only=True)
    return CONTRIBUTION_ENTRY + update.account_id.encode("utf-8") + b"\x00" + value


def decode_entry(entry: bytes) -> tuple[bytes, bytes | None, bytes]:
    """(destination, key, value) of an outbox entry."""
    kind, rest = entry[:1], entry[1:]
    key, _, value = rest.partition(b"\x00")
    return kind, key or None, value
