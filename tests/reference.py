"""An independent batch RFM computation on the raw CDNOW file (pandas, integer cents).

Shares no code with tierstream: it reads CDNOW_master.txt itself and applies the SPEC
window definition directly, so agreement with the replay is a real check.
"""

from __future__ import annotations

import os
from datetime import date

import pandas as pd


def cdnow_file() -> str:
    import lifetimes

    return os.path.join(os.path.dirname(lifetimes.__file__), "datasets", "CDNOW_master.txt")


def load_cdnow() -> pd.DataFrame:
    frame = pd.read_csv(
        cdnow_file(),
        sep=r"\s+",
        dtype={"customer_id": str, "date": str, "number_of_cds": int, "dollar_value": str},
    )
    # Money as integer cents: float sums would only be approximately right.
    dollars = frame["dollar_value"].str.split(".", expand=True)
    cents = dollars[1].fillna("0").str.ljust(2, "0").astype(int)
    frame["cents"] = dollars[0].astype(int) * 100 + cents
    frame["day"] = (
        pd.to_datetime(frame["date"], format="%Y%m%d") - pd.Timestamp("1970-01-01")
    ).dt.days
    return frame


def batch_rfm(frame: pd.DataFrame, as_of: date, window_days: int | None) -> pd.DataFrame:
    """SPEC: a purchase on day D counts iff day(T) - N < D <= day(T); recency = T - last."""
    t = (pd.Timestamp(as_of) - pd.Timestamp("1970-01-01")).days
    seen = frame[frame["day"] <= t]
    in_window = seen if window_days is None else seen[seen["day"] > t - window_days]
    every = seen.groupby("customer_id").agg(first_day=("day", "min"), last_day=("day", "max"))
    windowed = in_window.groupby("customer_id").agg(
        frequency=("cents", "size"), monetary_cents=("cents", "sum")
    )
    out = every.join(windowed, how="left").fillna({"frequency": 0, "monetary_cents": 0})
    out["frequency"] = out["frequency"].astype(int)
    out["monetary_cents"] = out["monetary_cents"].astype(int)
    out["recency_days"] = t - out["last_day"]
    return out
