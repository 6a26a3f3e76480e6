"""The as-of instant: one parser, and one range, for the CLI's --as-of and the API's as_of."""

from __future__ import annotations

from datetime import date, datetime

from scoring.days import date_to_day, day_start
from scoring.events import EARLIEST_EVENT, LATEST_EVENT

# The events' own range. The core's day arithmetic reaches a window and recency cuts past
# the as-of day, so a date near year 9999 (or 1) raised OverflowError deep inside a replay
# or an API request instead of being refused here; no as-of outside the events' range can
# mean anything anyway.
EARLIEST_AS_OF = EARLIEST_EVENT
LATEST_AS_OF = LATEST_EVENT


def parse_as_of(value: str) -> datetime:
    """``YYYY-MM-DD`` (the first instant of that UTC day) or an ISO-8601 datetime with offset.

    Raises ValueError with a message fit to show as is.
    """
    try:
        moment = day_start(date_to_day(date.fromisoformat(value)))
    except ValueError:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a date (YYYY-MM-DD) or an ISO-8601 datetime with offset"
            ) from None
        if moment.tzinfo is None:
            raise ValueError(f"{value!r} has no UTC offset; give a date or add one") from None
    if not EARLIEST_AS_OF <= moment < LATEST_AS_OF:
        raise ValueError(
            f"{value!r} is outside {EARLIEST_AS_OF.date()} .. {LATEST_AS_OF.date()} (exclusive)"
        )
    return moment
