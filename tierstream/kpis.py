"""KPIs of a population of customer states, grouped by tier, RFM segment or behaviour.

Reads happen here (states from Redis or a replay, the published segment and lifetime
value snapshots); the arithmetic is ``scoring.kpis``. ``DIMENSIONS`` is the registry of
groupings that ``GET /kpis?by=``, the report and the review accept: a new one (the account
tier, once accounts exist) is one more entry with a function of the customer's state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from scoring.days import day_to_date, utc_day
from scoring.engine import Scorer
from scoring.kpis import CustomerKpis, as_json, customer_kpis, group_kpis, overall_kpis
from scoring.state import CustomerState

if TYPE_CHECKING:
    from models.snapshot import BehaviourSnapshot
    from tierstream.clv import ClvSnapshot


@dataclass(frozen=True)
class Dimension:
    """A grouping of customers: its name, and the configured order of its groups."""

    name: str
    title: str
    order: Callable[[Scorer, BehaviourSnapshot | None], list[str]]


def _tier_order(scorer: Scorer, _: BehaviourSnapshot | None) -> list[str]:
    return [level.name for level in scorer.config.tiers.levels]


def _segment_order(scorer: Scorer, _: BehaviourSnapshot | None) -> list[str]:
    return list(dict.fromkeys(rule.name for rule in scorer.config.segments))


def _behaviour_order(_: Scorer, snapshot: BehaviourSnapshot | None) -> list[str]:
    if snapshot is None:
        return []
    return list(
        dict.fromkeys(s.label for s in sorted(snapshot.behaviours, key=lambda s: s.behaviour_id))
    )


DIMENSIONS: dict[str, Dimension] = {
    "tier": Dimension("tier", "Value tier", _tier_order),
    "segment": Dimension("segment", "RFM segment", _segment_order),
    "behaviour": Dimension("behaviour", "Behaviour segment", _behaviour_order),
}


@dataclass(frozen=True)
class Population:
    """Every customer's KPI inputs as of one day, and what they were computed with."""

    as_of: datetime
    period_days: int
    customers: list[CustomerKpis]
    skipped: int  # states already scored past the as-of day (left out: not exact)
    behaviours: BehaviourSnapshot | None
    clv: ClvSnapshot | None


def population(
    scorer: Scorer,
    states: Iterable[CustomerState],
    as_of: datetime,
    *,
    behaviours: BehaviourSnapshot | None = None,
    clv: ClvSnapshot | None = None,
) -> Population:
    """Bring a copy of each state to ``as_of`` and take its KPI inputs (states unchanged)."""
    day = utc_day(as_of)
    period = scorer.config.kpi_period_days
    customers: list[CustomerKpis] = []
    skipped = 0
    assign: Callable[[CustomerState], str | None] = _stored_behaviour
    if behaviours is not None:
        assign = _assigner(behaviours, scorer, as_of)
    for state in states:
        if state.clock_day is not None and state.clock_day > day:
            skipped += 1
            continue
        view = state.copy()
        scorer.advance(view, as_of)
        groups = {"tier": view.tier, "segment": view.segment, "behaviour": None}
        if view.scores is not None:
            groups["behaviour"] = assign(view)
        values = clv.values(view, day) if clv is not None else None
        customers.append(
            customer_kpis(
                view,
                day,
                period,
                groups,
                None if values is None else values.p_alive,
                None if values is None else values.clv,
            )
        )
    return Population(as_of, period, customers, skipped, behaviours, clv)


def _stored_behaviour(state: CustomerState) -> str | None:
    return None if state.behaviour is None else state.behaviour[1]


def _assigner(
    snapshot: BehaviourSnapshot, scorer: Scorer, as_of: datetime
) -> Callable[[CustomerState], str | None]:
    from tierstream.behaviours import behaviour  # noqa: PLC0415 - numpy; only with a model

    return lambda state: behaviour(snapshot, scorer, state, as_of).label


def kpi_table(scorer: Scorer, people: Population, by: str) -> dict[str, Any]:
    """The JSON body of ``GET /kpis?by=``: one row per group, and the row of everyone."""
    dimension = DIMENSIONS[by]
    rows = group_kpis(people.customers, by, dimension.order(scorer, people.behaviours))
    placed = [c for c in people.customers if c.groups.get(by) is not None]
    version = None if people.behaviours is None else people.behaviours.version
    return {
        "by": by,
        "as_of": day_to_date(utc_day(people.as_of)).isoformat(),
        "period_days": people.period_days,
        "customers": len(people.customers),
        "unplaced": len(people.customers) - len(placed),
        "skipped": people.skipped,
        "behaviour_model_version": version,
        "segment_model_version": version,  # deprecated name of behaviour_model_version
        "clv_model_version": None if people.clv is None else people.clv.version,
        "groups": [as_json(row) for row in rows],
        "all": as_json(overall_kpis(placed)),
    }


def unknown_dimension(by: str) -> str:
    return f"by must be one of {', '.join(DIMENSIONS)}, not {by!r}"
