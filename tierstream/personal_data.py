"""Everything held about one customer, as JSON (the right of access).

What the store holds for a customer: the state (purchase and engagement day totals inside
the window, remembered event-id digests, first and last purchase, scores, tier, segment,
behaviour segment, version, traits from the profiles topic), the recent tier-change
history, and the moment the customer is next re-scored. Nothing else is kept per customer;
tier changes on their way out sit in the shard's outbox only until Kafka acknowledges them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from scoring.criteria import TraitValue
from scoring.days import day_start
from scoring.engine import AsOfError, Scorer
from tierstream.stores.base import StateStore

# History entries asked for: more than any configured length (the setting's maximum is 100).
ALL_HISTORY = 1000


def customer_export(store: StateStore, scorer: Scorer, customer_id: str) -> dict[str, Any] | None:
    """The customer's data as held, or None when nothing is held."""
    state, history = store.lookup(customer_id, ALL_HISTORY)
    if state is None:
        return None
    held = state.to_dict()
    next_rescore = scorer.next_rescore_at(state)
    try:
        placement = scorer.record(state)
    except AsOfError:  # cannot happen for the state's own clock; kept safe
        placement = None
    return {
        "customer_id": customer_id,
        "exported_at": datetime.now(UTC).isoformat(),
        "state": {
            "version": state.version,
            "purchase_days": [
                {"day": _day(d), "purchases": t.purchases, "net": str(t.net)}
                for d, t in sorted(state.days.items())
            ],
            "engagement_days": [
                {"day": _day(d), "weights": {k: str(w) for k, w in sorted(kinds.items())}}
                for d, kinds in sorted(state.engagement_days.items())
            ],
            "remembered_event_digests": dict(sorted(state.seen.items())),
            "first_purchase_at": held.get("fp"),
            "last_purchase_at": held.get("lp"),
            "scored_until": _day(state.clock_day) if state.clock_day is not None else None,
            "scores": held.get("sc"),
            "tier": state.tier,
            "segment": state.segment,
            "behaviour": list(state.behaviour) if state.behaviour else None,
            # From the customer-profiles topic: numbers as decimal strings.
            "traits": _traits(state.traits),
            "traits_updated_at": held.get("ta"),
        },
        "placement": placement,
        "history": history,
        "next_rescore_at": next_rescore.isoformat() if next_rescore else None,
        "stored": held,
    }


def _traits(traits: dict[str, TraitValue] | None) -> dict[str, object] | None:
    if traits is None:
        return None
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in sorted(traits.items())}


def _day(day: int) -> str:
    return day_start(day).date().isoformat()
