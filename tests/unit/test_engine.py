from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from scoring.days import day_start, utc_day
from scoring.engine import AsOfError, Outcome, Scorer, change_event_id
from scoring.events import EngagementEvent, PurchaseEvent
from scoring.state import CustomerState

T0 = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)


def purchase(event_id: str, at: datetime, amount: str = "40", **kw) -> PurchaseEvent:
    return PurchaseEvent(
        event_id=event_id,
        customer_id="c1",
        occurred_at=at,
        amount=Decimal(amount),
        currency="USD",
        **kw,
    )


def test_first_purchase_places_customer_with_reason(default_config):
    scorer = Scorer(default_config)
    state = CustomerState("c1")
    result = scorer.apply(state, purchase("p1", T0, "20"), T0)
    assert result.outcome is Outcome.APPLIED
    (change,) = result.changes
    assert change.version == 1 and change.previous_tier is None
    assert change.new_tier == state.tier and change.new_segment == state.segment == "New"
    assert change.cause == "purchase"
    assert "purchase of 20 USD on 2025-03-01" in change.reason and "tier" in change.reason
    assert change.event_id == change_event_id("c1", 1)
    assert change.to_model().rfm.frequency == 1


def test_inactivity_demotion_fires_on_the_exact_day(default_config):
    scorer = Scorer(default_config)
    state = CustomerState("c1")
    scorer.apply(state, purchase("p1", T0, "300"), T0)
    scorer.apply(state, purchase("p2", T0 + timedelta(hours=1), "300"), T0)
    due = scorer.next_change_at(state)
    # recency cut 30 days: R drops 5 -> 4 when recency reaches 31 days
    assert due == day_start(utc_day(T0) + 31)
    assert scorer.advance(state, due - timedelta(seconds=1)) == []
    (change,) = scorer.advance(state, due)
    assert change.cause == "inactivity"
    assert change.occurred_at == due
    assert "no purchase for 31 days" in change.reason and "R 5→4" in change.reason
    assert change.version == 3 - 1 + 1  # two purchases gave one change (first), then this


def test_late_timer_still_emits_changes_at_their_own_moment(default_config):
    scorer = Scorer(default_config)
    state = CustomerState("c1")
    scorer.apply(state, purchase("p1", T0, "300"), T0)
    later = T0 + timedelta(days=400)
    result = scorer.apply(state, purchase("p2", later, "10"), later)
    causes = [c.cause for c in result.changes]
    assert causes[:-1] == ["inactivity"] * (len(causes) - 1) and causes[-1] == "purchase"
    moments = [c.occurred_at for c in result.changes]
    assert moments == sorted(moments)
    assert [c.version for c in result.changes] == list(range(2, 2 + len(result.changes)))


def test_duplicates_count_once_and_old_events_only_move_dates(default_config):
    scorer = Scorer(default_config)
    state = CustomerState("c1")
    scorer.apply(state, purchase("p1", T0), T0)
    assert scorer.apply(state, purchase("p1", T0), T0).outcome is Outcome.DUPLICATE
    old = T0 - timedelta(days=500)
    assert scorer.apply(state, purchase("p0", old), T0).outcome is Outcome.OUTSIDE_WINDOW
    record = scorer.record(state)
    assert record["frequency"] == 1 and record["monetary"] == "40"
    assert record["first_purchase_at"] == old.isoformat()


def test_refund_subtracts_and_foreign_currency_converts(default_config):
    scorer = Scorer(default_config)
    state = CustomerState("c1")
    scorer.apply(state, purchase("p1", T0, "100"), T0)
    refund = PurchaseEvent(
        event_id="r1",
        customer_id="c1",
        occurred_at=T0,
        amount=Decimal("10"),
        currency="EUR",
        kind="refund",
    )
    scorer.apply(state, refund, T0)
    assert scorer.record(state)["monetary"] == "89.20"  # 100 - 10 * 1.08


def test_engagement_scores_by_kind(default_config):
    scorer = Scorer(default_config)
    state = CustomerState("c1")
    for i in range(3):
        scorer.apply(
            state,
            EngagementEvent(event_id=f"e{i}", customer_id="c1", occurred_at=T0, kind="email_open"),
            T0,
        )
    record = scorer.record(state)
    assert record["engagement"] == {"email_open": "3"}
    assert record["tier"] is None  # no purchase yet: not placed
    assert scorer.explain(state).startswith("no purchase yet")


def test_record_refuses_an_as_of_before_the_state_clock(default_config):
    scorer = Scorer(default_config)
    state = CustomerState("c1")
    scorer.apply(state, purchase("p1", T0), T0)
    with pytest.raises(AsOfError):
        scorer.record(state, T0 - timedelta(days=2))


def test_window_expiry_drops_frequency_and_prunes_state(default_config):
    scorer = Scorer(default_config)
    state = CustomerState("c1")
    scorer.apply(state, purchase("p1", T0), T0)
    scorer.advance(state, T0 + timedelta(days=366))
    record = scorer.record(state)
    assert record["frequency"] == 0 and record["monetary"] == "0"
    assert state.days == {} and state.seen == {}
    assert record["recency_days"] == 366


def test_state_serialization_round_trip(default_config):
    scorer = Scorer(default_config)
    state = CustomerState("c1")
    scorer.apply(state, purchase("p1", T0, "12.34"), T0)
    scorer.apply(
        state,
        EngagementEvent(
            event_id="e", customer_id="c1", occurred_at=T0, kind="page_view", weight=Decimal("0.5")
        ),
        T0,
    )
    clone = CustomerState.from_dict(state.to_dict())
    assert clone == state
    assert scorer.record(clone) == scorer.record(state)


def test_erasure_emits_a_final_change(default_config):
    scorer = Scorer(default_config)
    state = CustomerState("c1")
    scorer.apply(state, purchase("p1", T0), T0)
    change = scorer.erase(state, T0)
    assert change is not None and change.cause == "erasure" and change.new_tier is None
    assert change.previous_tier is not None and change.version == 2
