"""Moving a recorded history to the present, for live demos (``produce --shift-to-now``).

A worker on the wall clock scores as of now: events from 1997 all fall outside a 365-day
window and a demo of them shows nothing happening. Shifting every event by the same whole
number of days keeps each customer's story intact (gaps, UTC days, the order of events)
and ends it today, so recency thresholds are crossed while one watches.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from scoring.events import InputEvent


def days_to_now(events: Sequence[InputEvent], now: datetime | None = None) -> int:
    """Whole days that move the last event's UTC day to today's (0 for no events)."""
    if not events:
        return 0
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    last = max(event.occurred_at for event in events).astimezone(UTC).date()
    return (today - last).days


def shift_days(events: Sequence[InputEvent], days: int) -> list[InputEvent]:
    """Every event ``days`` later (same event ids: a shifted replay is still one history)."""
    if days == 0:
        return list(events)
    delta = timedelta(days=days)
    return [event.model_copy(update={"occurred_at": event.occurred_at + delta}) for event in events]
