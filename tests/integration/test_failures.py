"""The worker under faults that neither kill it nor restart a service: Redis refusing writes
(a read-only replica, maxmemory reached), Kafka rejecting the tier changes it publishes,
and another owner fencing its shard. After each fault heals, every input event must be in
the state exactly once, every tier change published, and the worker still running.

Each test streams a CDNOW subset through Kafka at a steady rate (the event clock, as in
test_worker.py) into a worker that writes to a private redis-server, injects the fault
while the input is still flowing, heals it, and then checks the result against the
independent batch reference. The Redis faults change the private server's settings only;
the Kafka fault changes the test's own tier-changes topic only. Every fault is undone in
``finally`` (tests/integration/faults.py), whatever the test's outcome.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from tests.integration.faults import (
    Feeder,
    PrivateRedisServer,
    Zombie,
    applied,
    assert_workers_alive,
    kafka_topic_rejects_messages,
    loss_summary,
    redis_out_of_memory,
    redis_read_only,
    report,
    settle,
    wait_applied,
    wait_for,
)
from tests.integration.pipeline import (
    Pipeline,
    assert_chains_consistent,
    assert_exact,
    assert_totals_exact,
    subset,
)

pytestmark = pytest.mark.slow

# About 4,400 events of 1,500 customers, fed at 250 events/s: an 18 s stream, so that a fault
# of several seconds starts and ends while input is still arriving.
CUSTOMERS_BELOW = "01500"
RATE = 250.0
FAULT_SECONDS = 8.0
# A healed worker retries within seconds (store and producer back off up to 5 s).
RESUME_TIMEOUT = 45.0


@pytest.fixture
def private_redis(tmp_path) -> Iterator[PrivateRedisServer]:
    server = PrivateRedisServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_pipeline(
    kafka_bootstrap, private_redis, fresh_topics, unique_name, tmp_path
) -> Iterator[Callable[..., Pipeline]]:
    """Pipelines whose workers and checks use the private Redis."""
    made: list[Pipeline] = []

    def make(**options) -> Pipeline:
        pipeline = Pipeline(
            kafka_bootstrap, private_redis.url, fresh_topics, unique_name, tmp_path, **options
        )
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        for feeder in feeders.pop(id(pipeline), []):
            feeder.stop()
        # The test is over: SIGKILL spares a graceful shutdown nobody checks here, and
        # ends a worker hung by a fault just as well.
        pipeline.stop_all(signal.SIGKILL)
        pipeline.store.close()


# ---------------------------------------------------------------------- helpers
# Feeders still producing, by pipeline: stopped at teardown, before the topics are deleted.
feeders: dict[int, list[Feeder]] = {}


def start_streaming(pipeline: Pipeline, events: list, rate: float = RATE) -> Feeder:
    """Start a worker, wait until it owns every shard, then feed the input at ``rate``."""
    pipeline.start_worker()
    client = pipeline.store._client  # the shard epochs are the store's own
    wait_for(
        pipeline,
        lambda: all(
            client.hget(pipeline.store.meta_key(shard), "epoch")
            for shard in range(pipeline.partitions)
        ),
        "the worker acquiring every shard",
        timeout=90,
    )
    feeder = Feeder(pipeline, events, rate)
    feeders.setdefault(id(pipeline), []).append(feeder)
    return feeder


def hold(
    pipeline: Pipeline, fault: AbstractContextManager[object], seconds: float, what: str
) -> int:
    """Keep ``fault`` in place for ``seconds`` (failing at once if a worker exits), heal
    it, and return how many input messages were applied when it healed."""
    with fault:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert_workers_alive(pipeline, f"during {what}")
            time.sleep(0.25)
        at_heal = applied(pipeline)
    return at_heal


def wait_resumed(pipeline: Pipeline, at_heal: int, total: int, what: str) -> None:
    """Applying goes on after ``what`` healed (at least 100 more messages, or the rest)."""
    target = min(total, at_heal + 100)
    wait_applied(pipeline, target, RESUME_TIMEOUT, f"progress after {what} healed", total)


def assert_nothing_lost(pipeline: Pipeline, events: list, frame) -> None:
    """Every event in the state exactly once, every change published, totals exact."""
    settle(pipeline, len(events))
    try:
        assert_exact(pipeline, frame, {e.customer_id for e in events})
    except AssertionError as exc:
        raise AssertionError(f"{loss_summary(pipeline, events)}\n{exc}") from None
    changes = pipeline.changes()
    assert_chains_consistent(changes, pipeline.store)
    assert_totals_exact(pipeline, len(events), changes)
    assert_workers_alive(pipeline, "by the end")


def publishing_blocked(pipeline: Pipeline, before: dict[int, int]) -> str | None:
    """Why the Kafka fault did not bite (None if it did): the topic grew while it held."""
    after = pipeline.end_offsets("tier-changes")
    if after != before:
        return f"tier-changes grew from {before} to {after} while it rejected every record"
    return None


# ------------------------------------------------------------------------ tests
@pytest.mark.parametrize(
    ("fault", "code"),
    [
        # Redis turns into a read-only replica (of a master that does not answer): every
        # write gets READONLY, as clients see a failover before they move.
        pytest.param(redis_read_only, "READONLY", id="read_only_replica"),
        # maxmemory just above the memory in use (noeviction): every write gets OOM.
        pytest.param(redis_out_of_memory, "OOM", id="maxmemory_exceeded"),
    ],
)
def test_redis_refusing_writes_mid_stream_pauses_and_loses_nothing(
    make_pipeline, private_redis, cdnow_events, cdnow_frame, fault, code
):
    """Redis refuses every write for 8 s. The worker must pause, retry, and skip nothing
    once writes are accepted again."""
    events = subset(cdnow_events, CUSTOMERS_BELOW)
    total = len(events)
    pipeline = make_pipeline()
    feeder = start_streaming(pipeline, events)
    wait_applied(pipeline, total // 5, 90, "a fifth of the input, before the fault", total)
    refused = private_redis.error_count(code)
    at_heal = hold(pipeline, fault(private_redis), FAULT_SECONDS, code)
    assert private_redis.error_count(code) > refused, (
        f"no write was refused with {code}: the fault did not bite\n{report(pipeline, total)}"
    )
    wait_resumed(pipeline, at_heal, total, code)
    feeder.join()
    assert_nothing_lost(pipeline, events, cdnow_frame)


def test_kafka_rejecting_tier_changes_mid_stream_resends_them_all(
    make_pipeline, kafka_bootstrap, cdnow_events, cdnow_frame
):
    """The broker rejects every record on the tier-changes topic for 5 s
    (max.message.bytes = 100: MESSAGE_TOO_LARGE). The failed deliveries must be sent again
    (a new send: a failed send's future stays failed), every change must end up on the
    topic, and the worker must not hang."""
    events = subset(cdnow_events, CUSTOMERS_BELOW)
    total = len(events)
    pipeline = make_pipeline()
    feeder = start_streaming(pipeline, events)
    wait_applied(pipeline, total // 5, 90, "a fifth of the input, before the fault", total)
    topic = pipeline.topics["tier-changes"]
    fault = kafka_topic_rejects_messages(kafka_bootstrap, topic)
    with fault:
        time.sleep(1.0)  # produce requests already in flight may still be accepted
        before = pipeline.end_offsets("tier-changes")
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            assert_workers_alive(pipeline, "while Kafka rejected tier changes")
            time.sleep(0.25)
        unblocked = publishing_blocked(pipeline, before)
        waiting = sum(len(pipeline.store.outbox(s, 1)) for s in range(pipeline.partitions))
        at_heal = applied(pipeline)
    assert unblocked is None, unblocked
    assert waiting, f"no change waited in the outbox: the fault did not bite\n{report(pipeline)}"
    wait_resumed(pipeline, at_heal, total, "the Kafka delivery failure")
    feeder.join()
    assert_nothing_lost(pipeline, events, cdnow_frame)


def test_two_owners_fencing_each_other_over_one_partition_lose_nothing(
    make_pipeline, cdnow_events, cdnow_frame
):
    """One partition; while the worker streams, a second owner takes the shard over and
    over (RedisStore.acquire bumps the epoch, as a worker's rebalance does): first every
    0.2 s, then as fast as Redis answers. Each of the worker's commits may be fenced;
    it must re-read and redo, and every event must be applied exactly once."""
    events = subset(cdnow_events, CUSTOMERS_BELOW)
    total = len(events)
    pipeline = make_pipeline(partitions=1)
    feeder = start_streaming(pipeline, events)
    wait_applied(pipeline, total // 5, 90, "a fifth of the input, before the fencing", total)
    zombie = Zombie(pipeline, shard=0, interval=0.2)
    at_heal = hold(pipeline, zombie, 4.0, "fencing every 0.2 s")
    assert zombie.acquired >= 10, zombie.acquired
    wait_resumed(pipeline, at_heal, total, "fencing every 0.2 s")
    zombie = Zombie(pipeline, shard=0, interval=0)
    at_heal = hold(pipeline, zombie, 4.0, "fencing as fast as Redis answers")
    assert zombie.acquired >= 100, zombie.acquired
    wait_resumed(pipeline, at_heal, total, "fencing as fast as Redis answers")
    feeder.join()
    assert_nothing_lost(pipeline, events, cdnow_frame)


def test_two_workers_in_separate_groups_fencing_each_other_lose_nothing(
    make_pipeline, fresh_topics, unique_name, cdnow_events, cdnow_frame
):
    """Split brain: two worker processes on one partition, each in its own consumer group
    (so Kafka gives both the partition) but with one Redis state. Each believes it owns
    shard 0 and fences the other whenever it takes it back. Whichever commits, every
    event must be applied exactly once and every change published."""
    events = subset(cdnow_events, CUSTOMERS_BELOW)
    pipeline = make_pipeline(partitions=1)
    rival = unique_name("rival")
    fresh_topics.track(f"{rival}-__assignor-__leader")
    own_env = pipeline.env
    pipeline.start_worker()
    pipeline.env = {**own_env, "TIERSTREAM_APP_ID": rival}
    try:
        feeder = start_streaming(pipeline, events)
    finally:
        pipeline.env = own_env
    client = pipeline.store._client  # the shard epoch is the store's own
    wait_for(
        pipeline,
        lambda: int(client.hget(pipeline.store.meta_key(0), "epoch") or 0) >= 2,
        "both workers acquiring shard 0",
        timeout=90,
    )
    feeder.join()
    assert_nothing_lost(pipeline, events, cdnow_frame)
    assert len(pipeline.workers) == 2


def test_acceptance_sequence_read_only_then_oom_then_kafka_then_fencing(
    make_pipeline, private_redis, kafka_bootstrap, cdnow_events, cdnow_frame
):
    """The acceptance criterion in one stream: Redis a read-only replica for several
    seconds, then maxmemory exceeded, then a Kafka delivery failure, then two owners
    fencing each other over one partition; afterwards every event is in the state exactly
    once, every change is published, chains hold."""
    events = subset(cdnow_events, "02000")
    total = len(events)
    pipeline = make_pipeline()
    feeder = start_streaming(pipeline, events, rate=total / 40)  # a 40 s stream
    wait_applied(pipeline, total // 10, 90, "a tenth of the input, before the faults", total)
    phases: list[tuple[str, Callable[[], AbstractContextManager[object]], float]] = [
        ("READONLY", lambda: redis_read_only(private_redis), 6.0),
        ("OOM", lambda: redis_out_of_memory(private_redis), 6.0),
        (
            "the Kafka delivery failure",
            lambda: kafka_topic_rejects_messages(kafka_bootstrap, pipeline.topics["tier-changes"]),
            5.0,
        ),
        ("fencing of shard 0", lambda: Zombie(pipeline, shard=0, interval=0.05), 5.0),
    ]
    for what, fault, seconds in phases:
        at_heal = hold(pipeline, fault(), seconds, what)
        wait_resumed(pipeline, at_heal, total, what)
    feeder.join()
    assert_nothing_lost(pipeline, events, cdnow_frame)
