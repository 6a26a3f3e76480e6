"""The benchmark's event mix: seeded, heavy-tailed, roughly what a web shop sends.

* Customers: ``customers`` ids; each event picks one with probability proportional to an
  activity weight drawn from a Pareto distribution (shape ``pareto_alpha``, 1.5: a few
  customers are hundreds of times busier than the median one, most are seen once or never).
* Kinds: ``purchase_share`` (30%) of events go to the purchases topic, the rest are
  engagements (page_view 60%, app_session 20%, email_open 15%, email_click 5%).
  ``refund_share`` of purchases are followed by a (full or partial) refund of the same
  order a few hours to two weeks later.
* Amounts: log-normal (median about 40, long right tail), cents; currencies USD 92%,
  EUR 5%, GBP 3% (the default config converts them).
* Time: uniform over the ``days`` days before ``end`` (at least a minute before it, so
  nothing is in the future of a wall clock). Events arrive in time order except
  ``late_share`` of them, which arrive up to two days late; ``duplicate_share`` of events
  are delivered twice (same event id), as at-least-once producers do.

Everything comes from ``numpy.random.default_rng(seed)``: the same spec and ``end`` give the
same events. Events are the project's own pydantic models (validated), serialized by
``streams.producer.event_json``, keyed by customer id.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np

from scoring.events import EngagementEvent, InputEvent, PurchaseEvent

ENGAGEMENT_KINDS = ("page_view", "app_session", "email_open", "email_click")
ENGAGEMENT_SHARES = (0.60, 0.20, 0.15, 0.05)
CURRENCIES = ("USD", "EUR", "GBP")
CURRENCY_SHARES = (0.92, 0.05, 0.03)

# Stand-in timestamp for events dated when they are sent (the latency phase): replaced in
# the serialized bytes at send time (``stamp``).
PLACEHOLDER = datetime(2001, 1, 1, tzinfo=UTC)
PLACEHOLDER_BYTES = PLACEHOLDER.isoformat().encode()


@dataclass(frozen=True)
class MixSpec:
    events: int = 200_000
    customers: int = 100_000
    days: float = 90.0
    purchase_share: float = 0.30
    refund_share: float = 0.02
    late_share: float = 0.01
    duplicate_share: float = 0.001
    pareto_alpha: float = 1.5
    amount_median: float = 40.0
    amount_sigma: float = 1.0
    seed: int = 20_240_601

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Mix:
    spec: MixSpec
    end: datetime | None
    events: list[InputEvent]  # in delivery order (duplicates included)

    def stats(self) -> dict[str, Any]:
        kinds: Counter[str] = Counter()
        per_customer: Counter[str] = Counter()
        for event in self.events:
            kinds[event.kind] += 1
            per_customer[event.customer_id] += 1
        counts = sorted(per_customer.values(), reverse=True)
        purchases = kinds["purchase"] + kinds["refund"]
        top = counts[: max(1, len(counts) // 100)]
        return {
            "events": len(self.events),
            "purchases_topic": purchases,
            "engagements_topic": len(self.events) - purchases,
            "by_kind": dict(sorted(kinds.items())),
            "distinct_customers": len(counts),
            "events_per_customer_max": counts[0] if counts else 0,
            "events_per_customer_median": counts[len(counts) // 2] if counts else 0,
            "top_1pct_customers_share": round(sum(top) / len(self.events), 3)
            if self.events
            else 0.0,
            "unique_event_ids": len({e.event_id for e in self.events}),
        }


def generate(
    spec: MixSpec, end: datetime | None, *, id_prefix: str = "b", customer_prefix: str = "c"
) -> Mix:
    """The mix for ``spec``, dated in the ``spec.days`` before ``end``.

    ``end=None`` dates every event at ``PLACEHOLDER`` (stamped at send time by the caller).
    """
    rng = np.random.default_rng(spec.seed)
    n = spec.events
    n_dup = int(round(n * spec.duplicate_share))
    n_refund = int(round(n * spec.purchase_share * spec.refund_share))
    n_base = n - n_dup - n_refund
    if n_base <= 0:
        raise ValueError("too few events for the requested refund and duplicate shares")

    weights = rng.pareto(spec.pareto_alpha, spec.customers) + 1.0
    weights /= weights.sum()
    who = rng.choice(spec.customers, size=n_base, p=weights)
    purchase = rng.random(n_base) < (spec.purchase_share * n - n_refund) / n_base
    engagement_kind = rng.choice(len(ENGAGEMENT_KINDS), size=n_base, p=ENGAGEMENT_SHARES)
    currency = rng.choice(len(CURRENCIES), size=n_base, p=CURRENCY_SHARES)
    amounts = np.maximum(
        0.5, np.round(rng.lognormal(np.log(spec.amount_median), spec.amount_sigma, n_base), 2)
    )
    span = max(1.0, spec.days * 86_400.0 - 60.0)
    # Refund and redelivery delays are for a 90-day history; shorter mixes scale them down.
    delay_scale = min(1.0, span / (90 * 86_400.0))
    offsets = np.sort(rng.random(n_base) * span)  # seconds after the start of the span
    arrival = offsets.copy()
    late = rng.random(n_base) < spec.late_share
    arrival[late] += rng.random(int(late.sum())) * 2 * 86_400.0

    start = None if end is None else end - timedelta(seconds=spec.days * 86_400.0)

    def when(seconds: float) -> datetime:
        if start is None:
            return PLACEHOLDER
        return start + timedelta(seconds=round(float(min(seconds, span)), 3))

    events: list[tuple[float, InputEvent]] = []
    purchase_rows: list[int] = []
    for i in range(n_base):
        customer = f"{customer_prefix}{int(who[i]):06d}"
        event_id = f"{id_prefix}{spec.seed % 100_000:05d}-{i:08d}"
        at = when(offsets[i])
        event: InputEvent
        if purchase[i]:
            event = PurchaseEvent(
                event_id=event_id,
                customer_id=customer,
                occurred_at=at,
                amount=Decimal(f"{amounts[i]:.2f}"),
                currency=CURRENCIES[currency[i]],
                order_id=f"o{event_id}",
            )
            purchase_rows.append(len(events))
        else:
            event = EngagementEvent(
                event_id=event_id,
                customer_id=customer,
                occurred_at=at,
                kind=ENGAGEMENT_KINDS[engagement_kind[i]],
            )
        events.append((float(arrival[i]), event))

    # Refunds of earlier purchases, a few hours to two weeks after them.
    if purchase_rows and n_refund:
        refunded = rng.choice(len(purchase_rows), size=n_refund, replace=True)
        delays = (3_600.0 + rng.random(n_refund) * 14 * 86_400.0) * delay_scale
        partial = rng.random(n_refund) < 0.3
        fractions = np.where(partial, 0.2 + 0.6 * rng.random(n_refund), 1.0)
        for j in range(n_refund):
            source_arrival, source = events[purchase_rows[int(refunded[j])]]
            assert isinstance(source, PurchaseEvent)
            seconds = min(span, source_arrival + float(delays[j]))
            amount = (source.amount * Decimal(f"{fractions[j]:.2f}")).quantize(Decimal("0.01"))
            event = PurchaseEvent(
                event_id=f"{id_prefix}{spec.seed % 100_000:05d}-r{j:07d}",
                customer_id=source.customer_id,
                occurred_at=when(seconds),
                amount=max(amount, Decimal("0.01")),
                currency=source.currency,
                order_id=source.order_id,
                kind="refund",
            )
            events.append((seconds, event))

    # At-least-once delivery: a few events arrive twice, a little later.
    if n_dup:
        again = rng.choice(len(events), size=n_dup, replace=False)
        lag = rng.random(n_dup) * 600.0 * delay_scale
        events.extend(
            (events[int(k)][0] + float(lag[j]), events[int(k)][1]) for j, k in enumerate(again)
        )

    events.sort(key=lambda item: item[0])  # stable: delivery order
    return Mix(spec, end, [event for _, event in events])


def stamp(value: bytes, moment: datetime) -> bytes:
    """A serialized placeholder-dated event, dated ``moment`` instead."""
    return value.replace(PLACEHOLDER_BYTES, moment.isoformat().encode(), 1)
