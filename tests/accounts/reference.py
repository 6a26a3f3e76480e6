"""Accounts on CDNOW: a deterministic account for each event, and an independent pandas
aggregation of what every account holds at an as-of day (shares no code with tierstream).

A customer's account is ``A<id // 10>``; every third customer (id divisible by 3) moves,
from its first purchase on or after ``MOVE_DAY``, to ``B<id // 7>``: the account on a
customer's latest event is the one that holds all of its purchases.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from scoring.events import InputEvent
from tests.reference import batch_rfm

MOVE_DAY = (pd.Timestamp("1997-06-01") - pd.Timestamp("1970-01-01")).days


def account_of(customer_id: str, day: int) -> str:
    number = int(customer_id)
    if number % 3 == 0 and day >= MOVE_DAY:
        return f"B{number // 7}"
    return f"A{number // 10}"


def with_accounts(events: list[InputEvent]) -> list[InputEvent]:
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    out = []
    for event in events:
        day = (pd.Timestamp(event.occurred_at) - epoch).days
        out.append(event.model_copy(update={"account_id": account_of(event.customer_id, day)}))
    return out


def account_rfm(frame: pd.DataFrame, as_of: date, window_days: int | None) -> pd.DataFrame:
    """Per account: contacts, frequency, monetary (cents), first/last purchase day, recency:
    the customers' batch computation (tests/reference.py) with every purchase credited to
    the account on its customer's latest event up to ``as_of``."""
    t = (pd.Timestamp(as_of) - pd.Timestamp("1970-01-01")).days
    seen = frame[frame["day"] <= t].copy()
    seen["account"] = [
        account_of(c, d) for c, d in zip(seen["customer_id"], seen["day"], strict=True)
    ]
    # A customer's account: the one on its latest event (CDNOW: same-day events agree).
    latest = seen.sort_values("day").groupby("customer_id")["account"].last()
    contacts = latest.value_counts().rename("contacts")
    seen["customer_id"] = seen["customer_id"].map(latest)  # every purchase, to the account
    return batch_rfm(seen, as_of, window_days).join(contacts)
