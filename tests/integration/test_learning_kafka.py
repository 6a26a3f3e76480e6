"""Segments learned by the workers alone, from events through Kafka, across a kill -9."""

from __future__ import annotations

import json
import time

import pytest

from bench.learning import batch_agreement
from models.learning import Contribution, add_contribution
from models.snapshot import SegmentSnapshot
from streams.segment_learning import STATUS_META
from tests.integration.pipeline import subset
from tierstream.segments import SNAPSHOT_META

pytestmark = pytest.mark.integration

LEARNING = {
    "TIERSTREAM_LEARN_SEGMENTS": "true",
    "TIERSTREAM_LEARN_MERGE_SECONDS": "1",
    "TIERSTREAM_SEGMENTS_CHECK_SECONDS": "1",
    "TIERSTREAM_LEARN_SEED_CUSTOMERS": "300",
}


def settled(pipeline, timeout: float = 180) -> SegmentSnapshot:
    """Wait until a merge after the last input finds nothing to publish."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pipeline.wait_quiet(timeout=max(5.0, deadline - time.monotonic()))
        status = pipeline.store.get_meta(STATUS_META)
        raw = pipeline.store.get_meta(SNAPSHOT_META)
        if status and raw and not json.loads(status)["published"]:
            snapshot = SegmentSnapshot.from_bytes(raw)
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
    assert all(Contribution.from_list(s.learned).segment is not None for s in states)

    ari = batch_agreement(pipeline.scorer, pipeline.store, snapshot, snapshot.k)
    assert ari >= 0.9, ari
    pipeline.stop_all()
