"""Record by record comparison of computed RFM records with the batch reference.

Kept apart from tests/reference.py, which shares no code with tierstream: the expected
scores here come from tierstream's own ``raw_score`` on the reference values.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd

from scoring.days import day_to_date
from scoring.scores import raw_score


def rfm_mismatches(
    expected: pd.DataFrame,
    records: Mapping[str, Mapping[str, Any]],
    thresholds: Any,
    counted: tuple[str, ...] = (),
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(id, wanted, had) for every row of ``expected`` (batch_rfm or account_rfm, indexed by
    id) whose record differs in frequency, monetary (to the cent), recency, first or last
    purchase day, any integer column named in ``counted``, or in the R, F, M scores.

    Meant for configs without hysteresis, where the scores are a pure function of the
    values: they must equal ``raw_score`` of the reference values under ``thresholds``.
    """
    mismatches = []
    for key, row in expected.iterrows():
        got = records[key]
        want = {
            **{name: int(row[name]) for name in counted},
            "frequency": int(row["frequency"]),
            "monetary": Decimal(int(row["monetary_cents"])) / 100,
            "recency_days": int(row["recency_days"]),
            "first": day_to_date(int(row["first_day"])),
            "last": day_to_date(int(row["last_day"])),
        }
        have = {
            **{name: got[name] for name in counted},
            "frequency": got["frequency"],
            "monetary": Decimal(got["monetary"]),
            "recency_days": got["recency_days"],
            "first": datetime.fromisoformat(got["first_purchase_at"]).date(),
            "last": datetime.fromisoformat(got["last_purchase_at"]).date(),
        }
        want_scores = (
            raw_score(want["recency_days"], thresholds.recency, False),
            raw_score(want["frequency"], thresholds.frequency, True),
            raw_score(want["monetary"], thresholds.monetary, True),
        )
        if have != want or (got["r"], got["f"], got["m"]) != want_scores:
            mismatches.append((str(key), want, have))
    return mismatches
