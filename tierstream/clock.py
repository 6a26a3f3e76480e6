"""Where "now" comes from. Injected, so tests and backfills can move it deliberately."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class WallClock:
    """Real time, optionally started at a chosen instant and running at real speed.

    ``start`` lets an operator (or a test) rehearse a moment such as a UTC midnight when
    recency thresholds are crossed, without waiting for it.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._offset = timedelta(0)
        if start is not None:
            self._offset = start - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


class EventClock:
    """Event time: the latest event time seen (per shard), for backfills of history."""

    def __init__(self) -> None:
        self._watermark: datetime | None = None

    def observe(self, moment: datetime) -> None:
        if self._watermark is None or moment > self._watermark:
            self._watermark = moment

    def now(self) -> datetime:
        if self._watermark is None:
            return datetime.fromtimestamp(0, UTC)
        return self._watermark
