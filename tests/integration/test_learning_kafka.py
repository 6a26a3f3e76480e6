"""Segments learned by the workers alone, from events through Kafka, across a kill -9."""

from __future__ import annotations

import json
import time

import pytest

from bench.learning import batch_agreement
from models.features import DEFAULT_FEATURE_SPEC
from models.learning import (
    Contribution,
    PopulationStats,
    add_contribution,
    in_feature_order,
    merged_snapshot,
)
from models.snapshot import BehaviourSnapshot
from scoring.engine import Scorer
from streams.behaviour_learning import STATUS_META
from tests.integration.pipeline import AS_OF, ROOT, subset
from tierstream.behaviours import SNAPSHOT_META, learn_snapshot
from tierstream.replay import ReplayStats, replay
from tierstream.settings import load_scoring_config

pytestmark = pytest.mark.integration

LEARNING = {
    "TIERSTREAM_LEARN_BEHAVIOURS": "true",
    "TIERSTREAM_LEARN_MERGE_SECONDS": "1",
    "TIERSTREAM_BEHAVIOURS_CHECK_SECONDS": "1",
    "TIERSTREAM_LEARN_SEED_CUSTOMERS": "300",
}


def settled(pipeline, timeout: float = 180) -> BehaviourSnapshot:
    """Wait until a merge after the last input finds nothing to publish."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pipeline.wait_quiet(timeout=max(5.0, deadline - time.monotonic()))
        status = pipeline.store.get_meta(STATUS_META)
        raw = pipeline.store.get_meta(SNAPSHOT_META)
        if status and raw and not json.loads(status)["published"]:
            snapshot = BehaviourSnapshot.from_bytes(raw)
            if json.loads(status)["version"] == snapshot.version:
                return snapshot
        time.sleep(1.0)
    raise AssertionError(f"the learned model did not settle\n{pipeline.logs()}")


def test_workers_learn_a_model_that_settles_and_agrees_with_batch_kmeans(
    make_pipeline, cdnow_events
):
    events = subset(cdnow_events, "04000")
    pipeline = make_pipeline(env=LEARNING)
    pipeline.produce(events)
    first = pipeline.start_worker()
    pipeline.wait_applied(0.4)
    pipeline.kill(first)  # SIGKILL in the middle of learning
    pipeline.start_worker()
    pipeline.wait_applied(1.0)
    snapshot = settled(pipeline)
    assert snapshot.version >= 2, "versions advanced past the seeded model"

    # Exactly once: the merged statistics are the sum of the stored customers' current
    # contributions, and every applied event was learned from once.
    tallies = pipeline.store.tallies()
    expected: dict[str, int] = {}
    states = list(pipeline.store.scan())
    for state in states:
        assert state.learned is not None
        add_contribution(expected, Contribution.from_list(state.learned), 1)
    stats = {k: v for k, v in tallies.items() if k.startswith(("learn:n:", "learn:s:", "learn:q:"))}
    assert {k: v for k, v in stats.items() if v} == {k: v for k, v in expected.items() if v}
    assert tallies["learn:events"] == tallies["applied"]
    assert all(Contribution.from_list(s.learned).behaviour is not None for s in states)

    ari = batch_agreement(pipeline.scorer, pipeline.store, snapshot, snapshot.k)
    assert ari >= 0.9, ari
    pipeline.stop_all()


# Nothing moves with time alone in this configuration (lifetime window, recency cut points
# beyond the data's span), so the timer re-scores no one: each customer's last step is its
# last event, and its vector is a function of its partition's input alone.
STEPS = "learn:steps"
STEADY = {"window_days: 365": "window_days: lifetime", "[30, 90, 180, 365]": "[1e5, 2e5, 3e5, 4e5]"}


def test_statistics_after_a_kill_equal_an_uninterrupted_runs(make_pipeline, cdnow_events, tmp_path):
    """kill -9 while learning: the merged statistics equal an uninterrupted run's.

    Equality needs a run whose learning is a function of the input: a model in force from
    the first event to the last (published, and its sweep marked done, before the workers
    start; never replaced), and no timer steps (STEADY). Two deployments get the same
    events; one worker of the second is killed with SIGKILL at 40 %.
    """
    text = (ROOT / "configs" / "default.yaml").read_text()
    for old, new in STEADY.items():
        assert old in text
        text = text.replace(old, new)
    config = tmp_path / "steady.yaml"
    config.write_text(text)
    events = subset(cdnow_events, "03000")
    scorer = Scorer(load_scoring_config(config))
    replayed = replay(events, scorer, as_of=AS_OF, emit=lambda change: None, stats=ReplayStats())
    model = learn_snapshot(scorer, replayed.states.values(), AS_OF, k=5).snapshot
    fixed = LEARNING | {"TIERSTREAM_LEARN_PUBLISH_DISTANCE": "1e9"}  # v1 stays in force

    runs = [make_pipeline(env=fixed, config=config) for _ in range(2)]
    for pipeline in runs:
        pipeline.store.set_meta(SNAPSHOT_META, model.to_bytes())
        for shard in range(pipeline.partitions):
            pipeline.store.set_meta(f"segments_swept:{shard}", str(model.version).encode())
        pipeline.produce(events)
    calm, crashing = runs
    calm.start_worker()
    doomed = crashing.start_worker()
    crashing.wait_applied(0.4)
    crashing.kill(doomed)  # SIGKILL in the middle of learning
    crashing.start_worker()

    learned = []
    for pipeline in runs:
        pipeline.wait_applied(1.0)
        pipeline.wait_quiet()
        tallies = pipeline.store.tallies()
        assert tallies["learn:events"] == tallies["applied"] == len(events)
        assert tallies.get("rescored", 0) == 0  # no timer step: the setup holds
        # learn:steps counts contributions replaced, which depends on how events fell into
        # batches (two events of a customer in one batch replace it once): not a statistic.
        learned.append(
            {k: v for k, v in tallies.items() if k.startswith("learn:") and k != STEPS and v}
        )
    assert learned[0] == learned[1]
    # Merged, they give the same next model, byte for byte.
    names = DEFAULT_FEATURE_SPEC.names
    ordered = in_feature_order(model, names)
    merges = [
        merged_snapshot(PopulationStats.from_tallies(stats, len(names)), ordered, AS_OF)
        for stats in learned
    ]
    population = PopulationStats.from_tallies(learned[0], len(model.feature_names))
    assert population.customers == len(replayed.states)
    assert sum(1 for s in model.behaviours if population.behaviours.get(s.behaviour_id)) >= 3
    assert merges[0].snapshot.to_bytes() == merges[1].snapshot.to_bytes()
    for pipeline in runs:
        pipeline.stop_all()
