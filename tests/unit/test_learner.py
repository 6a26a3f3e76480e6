"""The worker's learning step: features in fixed point, assignment, exact per-step deltas."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from models.features import DEFAULT_FEATURE_SPEC, FeatureSpec
from models.learning import (
    UNIT,
    WEIGHT_UNIT,
    Contribution,
    PopulationStats,
    add_contribution,
    to_units,
)
from models.snapshot import Behaviour, BehaviourSnapshot, assign
from scoring.days import day_start, utc_day
from scoring.engine import Scorer
from scoring.events import EngagementEvent
from scoring.state import CustomerState
from streams.learner import VECTOR_MIN, Learner, _days, _sum_signed
from tests.unit.test_engine import purchase
from tierstream.behaviours import SnapshotBehaviour, customer_features

T0 = datetime(1998, 3, 2, tzinfo=UTC)
NAMES = DEFAULT_FEATURE_SPEC.names


def customers(scorer: Scorer, count: int) -> list[CustomerState]:
    rng = np.random.default_rng(7)
    states = []
    for i in range(count):
        state = CustomerState(f"c{i:03d}")
        for n in range(int(rng.integers(1, 5))):
            at = T0 + timedelta(days=int(rng.integers(0, 300)))
            event = purchase(f"p{i}-{n}", at, str(round(float(rng.exponential(60)), 2)))
            scorer.apply(state, event.model_copy(update={"customer_id": state.customer_id}), at)
        if i % 3 == 0:  # some engage too: the slow path of the features
            at = T0 + timedelta(days=301)
            engagement = EngagementEvent(
                event_id=f"e{i}",
                customer_id=state.customer_id,
                occurred_at=at,
                kind="email_open",
                weight=Decimal(3),
            )
            scorer.apply(state, engagement, at)
        states.append(state)
    return states


def model() -> BehaviourSnapshot:
    rng = np.random.default_rng(3)
    return BehaviourSnapshot(
        version=1,
        created_at=T0,
        feature_names=tuple(sorted(NAMES)),  # a batch-learned snapshot's column order
        mean=tuple(rng.normal(size=len(NAMES)).tolist()),
        scale=tuple((rng.random(len(NAMES)) + 0.5).tolist()),
        behaviours=tuple(
            Behaviour(10 + i, f"s{i}", tuple(rng.normal(2, 2, size=len(NAMES)).tolist()), 0.2, 1.0)
            for i in range(4)
        ),
    )


def test_units_are_the_feature_vector_and_segments_those_of_assign(default_config):
    snapshot = model()
    scorer = Scorer(default_config).with_behaviour(SnapshotBehaviour(snapshot))
    states = customers(scorer, 3 * VECTOR_MIN)
    learner = Learner(0)
    tallies: dict[str, int] = {}
    learner.learn(scorer, states, tallies, len(states))  # numpy path
    one_by_one: dict[str, int] = {}
    for state in states:
        features = customer_features(scorer, state, day_start(state.clock_day))
        expected_segment = assign(snapshot, features).behaviour_id
        assert state.learned == [expected_segment, *to_units(list(features.values()))]
        add_contribution(one_by_one, Contribution.from_list(state.learned), 1)
    learned = {
        k: v for k, v in tallies.items() if k.startswith(("learn:n:", "learn:s:", "learn:q:"))
    }
    assert learned == {k: v for k, v in one_by_one.items() if v}
    assert tallies["learn:events"] == len(states) and tallies["learn:steps"] == len(states)

    # Learning the same customers again adds nothing; small steps (plain Python) agree.
    again: dict[str, int] = {}
    learner.learn(scorer, states, again, 0)
    assert again == {}
    for state in states:
        state.learned = None
    small: dict[str, int] = {}
    for state in states:
        learner.learn(scorer, [state], small, 0)
    assert {k: v for k, v in small.items() if v and k in learned} == learned


def test_a_customer_moving_segment_moves_its_contribution(default_config):
    scorer = Scorer(default_config)
    states = customers(scorer, 5)
    learner = Learner(seeds_wanted=2)
    tallies: dict[str, int] = {}
    learner.learn(scorer, states, tallies, 5)
    assert tallies["learn:n:-"] == 5 and tallies["learn:seeds"] == 2
    assert sum(1 for k in tallies if k.startswith("learn:seed:") and k.endswith(":n")) == 2
    assert {s.learned_seed[0] for s in states if s.learned_seed is not None} == {0, 1}
    assert not any(s.customer_id in k for s in states for k in tallies)
    modelled = scorer.with_behaviour(SnapshotBehaviour(model()))
    learner.learn(modelled, states, tallies, 0)
    population = PopulationStats.from_tallies(tallies, len(NAMES))
    assert population.behaviours["-"].n == 0
    assert all(v == 0 for v in population.behaviours["-"].sums)
    assert sum(p.n for p in population.behaviours.values()) == 5


def test_forgetting_erased_customers_takes_their_contributions_out(default_config):
    scorer = Scorer(default_config)
    states = customers(scorer, 4)
    learner = Learner(0)
    tallies: dict[str, int] = {}
    learner.learn(scorer, states, tallies, 4)
    learner.forget(states[:3], tallies)
    alone: dict[str, int] = {}
    fresh = [s.copy() for s in states[3:]]
    for state in fresh:
        state.learned = None
    Learner(0).learn(scorer, fresh, alone, 0)
    stats = {k: v for k, v in tallies.items() if k.startswith(("learn:n:", "learn:s:", "learn:q:"))}
    assert {k: v for k, v in stats.items() if v} == {
        k: v for k, v in alone.items() if v and k.startswith(("learn:n:", "learn:s:", "learn:q:"))
    }
    assert all(s.learned is None for s in states[:3])


def test_forgetting_a_seed_customer_zeroes_its_seed_and_frees_its_place(default_config):
    scorer = Scorer(default_config)
    states = customers(scorer, 4)
    learner = Learner(seeds_wanted=2, shard=3)
    tallies: dict[str, int] = {}
    learner.learn(scorer, states[:3], tallies, 3)
    seeded = [s for s in states if s.learned_seed is not None]
    assert [s.learned_seed[0] for s in seeded] == [0, 1]  # type: ignore[index]
    learner.forget(seeded[:1], tallies)
    assert seeded[0].learned_seed is None
    assert all(v == 0 for k, v in tallies.items() if k.startswith("learn:seed:3:0:"))
    assert tallies["learn:seeds"] == 1 and tallies["learn:seed_ordinals"] == 2
    learner.learn(scorer, states[3:], tallies, 1)  # the freed place goes to a new ordinal
    assert states[3].learned_seed is not None and states[3].learned_seed[0] == 2
    population = PopulationStats.from_tallies(tallies, len(NAMES))
    assert sorted(population.seeds) == [(3, 1), (3, 2)]


def learned_stats(tallies: dict[str, int]) -> dict[str, int]:
    prefixes = ("learn:n:", "learn:s:", "learn:q:", "learn:w:", "learn:nw:")
    return {k: v for k, v in tallies.items() if k.startswith(prefixes) and v}


@pytest.mark.parametrize("count", [5, VECTOR_MIN + 4])  # plain and numpy paths
def test_forgetting_weights_are_exact_to_add_and_take_out(default_config, count):
    """With a half-life every contribution carries its weight: re-learning customers as
    they change gives exactly the statistics of learning their final states afresh."""
    scorer = Scorer(default_config)
    states = customers(scorer, count)
    learner = Learner(0, half_life_days=90)
    tallies: dict[str, int] = {}
    learner.learn(scorer, states, tallies, count)
    assert all(len(s.learned or ()) == 2 + len(NAMES) for s in states)
    later = T0 + timedelta(days=400)
    for state in states[::2]:  # half of them age (and lose weight), half buy again
        scorer.advance(state, later)
    for i, state in enumerate(states[1::2]):
        event = purchase(f"again{i}", later, "20.00")
        scorer.apply(state, event.model_copy(update={"customer_id": state.customer_id}), later)
    learner.learn(scorer.with_behaviour(SnapshotBehaviour(model())), states, tallies, count)
    fresh = [s.copy() for s in states]
    for state in fresh:
        state.learned = None
    alone: dict[str, int] = {}
    Learner(0, half_life_days=90).learn(
        scorer.with_behaviour(SnapshotBehaviour(model())), fresh, alone, 0
    )
    assert learned_stats(tallies) == learned_stats(alone)
    assert any(k.startswith("learn:w:") for k in learned_stats(alone))
    learner.forget(states, tallies)
    assert learned_stats(tallies) == {}


def test_a_weight_is_two_to_the_minus_age_over_the_half_life(default_config):
    scorer = Scorer(default_config)
    state = customers(scorer, 1)[0]
    learner = Learner(0, half_life_days=30)
    learner.learn(scorer, [state], {}, 1)
    assert state.learned is not None and state.clock_day is not None
    age = state.clock_day - utc_day(state.last_purchase_at)  # type: ignore[arg-type]
    assert state.learned[-1] == round(WEIGHT_UNIT * 0.5 ** (age / 30))
    # Recency in days comes back from its fixed-point log exactly, on both paths.
    units = [round(math.log1p(d) * UNIT) for d in range(DEFAULT_FEATURE_SPEC.recency_cap_days + 1)]
    back = np.rint(np.expm1(np.array(units) / UNIT)).astype(int).tolist()
    assert back == list(range(len(units)))
    assert [_days(u, 10**6) for u in units] == back


def test_forgetting_makes_centroids_weighted_means():
    tallies: dict[str, int] = {}
    rows = [((1.0, 2.0, 0, 0), WEIGHT_UNIT), ((3.0, 6.0, 0, 0), WEIGHT_UNIT // 4)]
    rows.append(((5.0, 0.0, 0, 0), 0))
    learner = Learner(0, spec=FeatureSpec(engagement_kinds=()))  # 4 features
    for vector, weight in rows:
        row = [0, *(round(v * UNIT) for v in vector), weight]
        delta: dict[int, list[int]] = {}
        _sum_signed(delta, np.array([row], dtype=np.int64), np.ones(1, dtype=np.int64), 4)
        learner._tally(delta, tallies)
    population = PopulationStats.from_tallies(tallies, 4)
    assert population.behaviours[0].n == 3 and population.behaviours[0].mass == 1.25
    centroid = population.centroid(0)
    assert centroid is not None
    expected = [(1.0 + 3.0 / 4) / 1.25, (2.0 + 6.0 / 4) / 1.25, 0, 0]
    np.testing.assert_allclose(centroid, expected)
