"""Population quintile cut points (scores.method = quintiles)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from scoring.engine import Scorer
from scoring.scores import Thresholds, quantile_cuts
from scoring.state import CustomerState


def population_thresholds(
    scorer: Scorer, states: Iterable[CustomerState], day: int, version: int
) -> Thresholds:
    """Quintile cut points over every customer who has purchased, as of ``day``."""
    recency: list[int] = []
    frequency: list[int] = []
    monetary: list[Decimal] = []
    engagement: list[Decimal] = []
    for state in states:
        values = scorer.values(state, day)
        if values.recency_days is None:
            continue
        recency.append(values.recency_days)
        frequency.append(values.frequency)
        monetary.append(values.monetary)
        engagement.append(scorer.engagement_total(values))
    if not recency:
        return scorer.thresholds
    return Thresholds(
        recency=quantile_cuts(recency, higher_is_better=False),
        frequency=quantile_cuts(frequency),
        monetary=quantile_cuts(monetary),
        engagement=quantile_cuts(engagement),
        version=version,
    )
