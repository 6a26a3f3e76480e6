"""Key performance indicators per group of customers (tier, RFM segment, behaviour, ...).

Pure arithmetic over one ``CustomerKpis`` per customer (docs/kpis.md defines every KPI).
The period P is the KPI window: "this window" is the UTC days (T-P, T] of the as-of day T,
"the previous window" the days (T-2P, T-P]. P defaults to the scoring window and may not
exceed it: the state then holds every purchase day of this window, and of the previous
one it holds those still in the scoring window plus the latest pruned purchase day
(``CustomerState.archived``), which is all "did the customer buy then" needs.

Groupings are named functions of a customer's ``groups`` mapping, so a new dimension (an
account tier, once accounts exist) is one more key there, not a new calculation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from scoring.state import CustomerState

_ZERO = Decimal(0)
TOP_SHARE = Decimal("0.2")  # the "top 20%" of the 80/20 concentration


@dataclass(frozen=True, slots=True)
class CustomerKpis:
    """What the KPIs need of one customer as of the day T."""

    customer_id: str
    groups: dict[str, str | None]  # dimension -> the customer's group (None: not placed)
    revenue: Decimal  # net amount of this window
    purchases: int  # purchases (events) of this window
    bought_now: bool  # a purchase day in this window
    bought_before: bool  # a purchase day in the previous window
    p_alive: float | None = None  # None while no lifetime value model is published
    clv_12m: float | None = None


@dataclass(frozen=True, slots=True)
class GroupKpis:
    group: str
    customers: int
    customer_share: float
    revenue: Decimal
    revenue_share: float | None  # None when the total revenue is not positive
    top20_revenue_share: float | None  # None when the group's revenue is not positive
    average_order_value: Decimal | None  # None without purchases
    purchases_per_customer: float
    previous_buyers: int
    retained: int
    retention: float | None  # None without buyers in the previous window
    churn_rate: float | None
    mean_p_alive: float | None  # over the customers with a value; None without any
    mean_clv_12m: float | None


def customer_kpis(
    state: CustomerState,
    day: int,
    period: int,
    groups: dict[str, str | None],
    p_alive: float | None = None,
    clv_12m: float | None = None,
) -> CustomerKpis:
    """One customer's KPI inputs as of ``day`` with a KPI window of ``period`` days."""
    now_from, before_from = day - period, day - 2 * period
    revenue = _ZERO
    purchases = 0
    bought_now = bought_before = False
    for d, totals in state.days.items():
        if now_from < d <= day:
            revenue += totals.net
            purchases += totals.purchases
            bought_now = bought_now or totals.purchases > 0
        elif before_from < d <= now_from and totals.purchases > 0:
            bought_before = True
    archived = state.archived
    if archived is not None and archived.last_day is not None:
        # Pruned days all precede the scoring window, hence this KPI window too.
        bought_before = bought_before or before_from < archived.last_day <= now_from
    return CustomerKpis(
        state.customer_id,
        groups,
        revenue,
        purchases,
        bought_now,
        bought_before,
        p_alive,
        clv_12m,
    )


def group_kpis(
    customers: Iterable[CustomerKpis], dimension: str, order: Sequence[str] = ()
) -> list[GroupKpis]:
    """The KPIs of each group of ``dimension``: groups in ``order`` first (empty ones too),
    then any others by name. Customers not placed in the dimension are left out."""
    members: dict[str, list[CustomerKpis]] = {name: [] for name in order}
    for customer in customers:
        name = customer.groups.get(dimension)
        if name is not None:
            members.setdefault(name, []).append(customer)
    total_customers = sum(len(group) for group in members.values())
    total_revenue = sum((c.revenue for group in members.values() for c in group), _ZERO)
    names = list(order) + sorted(name for name in members if name not in order)
    return [_kpis(name, members[name], total_customers, total_revenue) for name in names]


def overall_kpis(customers: Sequence[CustomerKpis]) -> GroupKpis:
    """The same KPIs over every customer given (the "all" row)."""
    total = sum((c.revenue for c in customers), _ZERO)
    return _kpis("all", list(customers), len(customers), total)


def top_share(revenues: Sequence[Decimal], share: Decimal = TOP_SHARE) -> float | None:
    """Share of the total held by the ceil(share * n) largest values (None: total <= 0)."""
    total = sum(revenues, _ZERO)
    if not revenues or total <= 0:
        return None
    top = math.ceil(share * len(revenues))
    return float(sum(sorted(revenues, reverse=True)[:top], _ZERO) / total)


def _kpis(
    name: str, group: list[CustomerKpis], total_customers: int, total_revenue: Decimal
) -> GroupKpis:
    n = len(group)
    revenue = sum((c.revenue for c in group), _ZERO)
    purchases = sum(c.purchases for c in group)
    previous = [c for c in group if c.bought_before]
    retained = sum(1 for c in previous if c.bought_now)
    retention = retained / len(previous) if previous else None
    alive = [c.p_alive for c in group if c.p_alive is not None]
    values = [c.clv_12m for c in group if c.clv_12m is not None]
    return GroupKpis(
        group=name,
        customers=n,
        customer_share=n / total_customers if total_customers else 0.0,
        revenue=revenue,
        revenue_share=float(revenue / total_revenue) if total_revenue > 0 else None,
        top20_revenue_share=top_share([c.revenue for c in group]),
        average_order_value=revenue / purchases if purchases else None,
        purchases_per_customer=purchases / n if n else 0.0,
        previous_buyers=len(previous),
        retained=retained,
        retention=retention,
        churn_rate=None if retention is None else 1.0 - retention,
        # fsum: exactly rounded, so the mean does not depend on the order of the scan
        mean_p_alive=math.fsum(alive) / len(alive) if alive else None,
        mean_clv_12m=math.fsum(values) / len(values) if values else None,
    )


def as_json(row: GroupKpis) -> dict[str, object]:
    """A JSON-ready row: money as decimal strings (exact), ratios as numbers."""
    aov = row.average_order_value
    return {
        "group": row.group,
        "customers": row.customers,
        "customer_share": row.customer_share,
        "revenue": str(row.revenue),
        "revenue_share": row.revenue_share,
        "top20_revenue_share": row.top20_revenue_share,
        "average_order_value": None if aov is None else str(aov.quantize(Decimal("0.01"))),
        "purchases_per_customer": row.purchases_per_customer,
        "previous_buyers": row.previous_buyers,
        "retained": row.retained,
        "retention": row.retention,
        "churn_rate": row.churn_rate,
        "mean_p_alive": row.mean_p_alive,
        "mean_clv_12m": row.mean_clv_12m,
    }
