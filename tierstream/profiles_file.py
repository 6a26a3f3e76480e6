"""A file of profile updates for ``tierstream replay --profiles``: one JSON object a line.

Each line is what the customer-profiles topic carries as a value, with ``updated_at``
always present (it orders the update among the purchases and engagements; a line with
``"traits": null`` deletes the customer's traits, as a tombstone does on the topic).
Malformed lines are rejects with their line number, never a traceback. The updates are
held in memory and sorted by ``updated_at`` (ties in file order): a profile file has about
one line per customer, not one per event.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import ValidationError

from scoring.profiles import ProfileUpdate
from tierstream.input_rows import Reject, error_text
from tierstream.readers import _lines, open_binary


def read_profiles(path: Path) -> Iterator[ProfileUpdate | Reject]:
    """The updates of a profiles file, in file order; bad lines as ``Reject``."""
    for number, line in _lines(open_binary(path)):
        if isinstance(line, Reject):
            yield line
            continue
        if not line.strip():
            continue
        try:
            update = ProfileUpdate.model_validate_json(line)
        except ValidationError as exc:
            yield Reject(number, error_text(exc), line[:2000])
            continue
        if update.updated_at is None:
            yield Reject(number, "updated_at: required in a profiles file", line[:2000])
            continue
        yield update


def in_time_order(updates: Iterable[ProfileUpdate]) -> list[ProfileUpdate]:
    """Sorted by ``updated_at``, ties in file order (``sorted`` is stable)."""
    return sorted(updates, key=lambda update: update.occurred_at)
