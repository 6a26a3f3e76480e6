"""Behaviour segments learned from customer state: deterministic and shared by readers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from models.snapshot import BehaviourSnapshot
from scoring.engine import Scorer
from tests.cdnow import cdnow_history
from tierstream.behaviours import behaviour, learn_snapshot
from tierstream.replay import ReplayStats, replay

AS_OF = datetime(1998, 7, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def cdnow_states(request):
    config = request.getfixturevalue("default_config")
    events = [e for e in cdnow_history() if e.customer_id < "05000"]
    result = replay(events, Scorer(config), as_of=AS_OF, emit=lambda c: None, stats=ReplayStats())
    return result.scorer, list(result.states.values())


def test_learning_twice_gives_the_same_snapshot(cdnow_states):
    scorer, states = cdnow_states
    first = learn_snapshot(scorer, states, AS_OF, seed=3)
    second = learn_snapshot(scorer, list(reversed(states)), AS_OF, seed=3)
    assert first.snapshot.to_bytes() == second.snapshot.to_bytes()
    assert sum(first.sizes.values()) == len(states)
    assert len({s.label for s in first.snapshot.behaviours}) == 5


def test_two_readers_with_the_same_snapshot_version_agree(cdnow_states):
    scorer, states = cdnow_states
    published = learn_snapshot(scorer, states, AS_OF).snapshot.to_bytes()
    worker_a, worker_b = (
        BehaviourSnapshot.from_bytes(published),
        BehaviourSnapshot.from_bytes(published),
    )
    assert worker_a.version == worker_b.version == 1
    for state in states[:2000]:
        assert behaviour(worker_a, scorer, state, AS_OF) == behaviour(
            worker_b, scorer, state, AS_OF
        )


def test_a_new_snapshot_keeps_segment_ids_and_reports_drift(cdnow_states):
    scorer, states = cdnow_states
    first = learn_snapshot(scorer, states, AS_OF).snapshot
    again = learn_snapshot(scorer, states, AS_OF, previous=first, seed=1)
    assert again.snapshot.version == 2
    assert again.drift is not None
    assert {s.behaviour_id for s in again.snapshot.behaviours} == {
        s.behaviour_id for s in first.behaviours
    }


def test_replaying_twice_with_a_snapshot_gives_the_same_segments(cdnow_states, default_config):
    from tierstream.behaviours import SnapshotBehaviour

    scorer, states = cdnow_states
    published = learn_snapshot(scorer, states, AS_OF).snapshot.to_bytes()
    events = [e for e in cdnow_history() if e.customer_id < "02000"]
    runs = []
    for _ in range(2):  # two processes' worth: each parses the published bytes itself
        model = SnapshotBehaviour(BehaviourSnapshot.from_bytes(published))
        changes: list = []
        result = replay(
            events,
            Scorer(default_config, behaviour=model),
            as_of=AS_OF,
            emit=changes.append,
            stats=ReplayStats(),
        )
        runs.append((changes, {c: s.behaviour for c, s in result.states.items()}))
    (changes_a, segments_a), (changes_b, segments_b) = runs
    assert changes_a == changes_b
    assert segments_a == segments_b
    assert None not in segments_a.values()  # every customer was placed
    assert any(c.previous_behaviour != c.new_behaviour for c in changes_a)
