"""The behavioural segment on the scoring path: assigned at every re-score, carried on the
tier-change events, stable across model versions that keep a segment's id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.snapshot import Behaviour, BehaviourSnapshot
from scoring.engine import Scorer
from scoring.events import TierChange
from scoring.state import CustomerState
from tests.unit.test_engine import purchase
from tierstream.behaviours import SnapshotBehaviour

T0 = datetime(1998, 3, 2, tzinfo=UTC)


def snapshot(version: int, small: tuple[int, str, float], big: tuple[int, str, float]):
    """A one-feature model on monetary: log-compressed spend near 2 (small) or 8 (big)."""
    return BehaviourSnapshot(
        version=version,
        created_at=T0,
        feature_names=("slog_monetary",),
        mean=(0.0,),
        scale=(1.0,),
        behaviours=tuple(
            Behaviour(behaviour_id, label, (centre,), 0.5, 1.0)
            for behaviour_id, label, centre in (small, big)
        ),
    )


V1 = snapshot(1, (7, "small spender", 2.0), (9, "big spender", 8.0))


def scorer_with(default_config, snap: BehaviourSnapshot | None) -> Scorer:
    return Scorer(default_config, behaviour=None if snap is None else SnapshotBehaviour(snap))


def test_the_behavioural_segment_travels_on_the_changes(default_config):
    scorer = scorer_with(default_config, V1)
    state = CustomerState("c1")
    first = scorer.apply(state, purchase("e1", T0, "100"), T0).changes
    assert [(c.previous_behaviour, c.new_behaviour) for c in first] == [(None, "small spender")]
    later = T0 + timedelta(hours=1)
    second = scorer.apply(state, purchase("e2", later, "60"), later).changes
    assert [(c.previous_behaviour, c.new_behaviour) for c in second] == [
        ("small spender", "big spender")
    ]
    assert "behaviour: big spender (segment model v1)" in second[0].reason
    assert state.behaviour == (9, "big spender")
    published = TierChange.model_validate(second[0].to_json())
    assert published.new_behaviour == "big spender"


def test_without_a_model_the_behaviour_stays_empty(default_config):
    scorer = scorer_with(default_config, None)
    state = CustomerState("c1")
    (change,) = scorer.apply(state, purchase("e1", T0, "100"), T0).changes
    assert state.behaviour is None
    assert change.to_json()["previous_behaviour"] is None
    assert change.to_json()["new_behaviour"] is None


def test_a_model_update_that_moves_a_customer_emits_a_model_update_change(default_config):
    state = CustomerState("c1")
    scorer_with(default_config, V1).apply(state, purchase("e1", T0, "100"), T0)
    tier, segment, version = state.tier, state.segment, state.version
    # Version 2 moved the "big" centre down: a 100 USD customer now belongs there.
    v2 = snapshot(2, (7, "small spender", 0.5), (9, "big spender", 4.0))
    changes = scorer_with(default_config, v2).rescore(
        state, T0, "model_update", "behavioural segments re-learned (segment model v2)"
    )
    assert len(changes) == 1
    change = changes[0]
    assert change.cause == "model_update" and change.version == version + 1
    assert (change.previous_tier, change.new_tier) == (tier, tier)  # only the behaviour moved
    assert (change.previous_segment, change.new_segment) == (segment, segment)
    assert (change.previous_behaviour, change.new_behaviour) == ("small spender", "big spender")
    assert "segment model v2" in change.reason


def test_a_renamed_segment_is_not_a_change(default_config):
    state = CustomerState("c1")
    scorer_with(default_config, V1).apply(state, purchase("e1", T0, "100"), T0)
    renamed = snapshot(2, (7, "modest spender", 2.1), (9, "big spender", 8.0))
    changes = scorer_with(default_config, renamed).rescore(state, T0, "model_update", "v2")
    assert changes == []
    assert state.behaviour == (7, "modest spender")  # same segment id, current description


def test_the_behaviour_survives_serialization_and_erasure_reports_it(default_config):
    scorer = scorer_with(default_config, V1)
    state = CustomerState("c1")
    scorer.apply(state, purchase("e1", T0, "100"), T0)
    restored = CustomerState.from_dict(state.to_dict())
    assert restored.behaviour == (7, "small spender")
    assert restored == state
    final = scorer.erase(restored, T0)
    assert final is not None
    assert (final.previous_behaviour, final.new_behaviour) == ("small spender", None)
    assert restored.behaviour is None


def test_permuted_histories_end_in_the_same_behavioural_segment(default_config):
    scorer = scorer_with(default_config, V1)
    events = [purchase(f"e{i}", T0 + timedelta(days=i), str(20 + 15 * i)) for i in range(6)]
    now = T0 + timedelta(days=10)
    finals = set()
    for order in (events, list(reversed(events)), events[3:] + events[:3]):
        state = CustomerState("c1")
        for event in order:
            scorer.apply(state, event, now)
        finals.add(state.behaviour)
    assert finals == {(9, "big spender")}
