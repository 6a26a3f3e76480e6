"""UTC-day arithmetic: the window and recency are defined on whole UTC days."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache

_EPOCH = date(1970, 1, 1)
_EPOCH_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)


def utc_day(moment: datetime) -> int:
    """Days since 1970-01-01 of the UTC calendar day that contains ``moment``."""
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; give a timezone")
    # Aware subtraction is in UTC and timedelta.days floors, so this is the UTC day.
    return (moment - _EPOCH_INSTANT).days


@lru_cache(maxsize=4096)
def day_start(day: int) -> datetime:
    """The first instant (00:00:00 UTC) of a day number."""
    return datetime.combine(_EPOCH + timedelta(days=day), time(0), tzinfo=UTC)


def day_to_date(day: int) -> date:
    return _EPOCH + timedelta(days=day)


def date_to_day(value: date) -> int:
    return (value - _EPOCH).days
