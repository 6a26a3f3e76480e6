"""Prometheus metrics: what a worker process does, and what the API measures on scrape.

Two parts, each on a dedicated ``CollectorRegistry`` (never the global one, so several
apps in one process, and the tests, do not collide):

* ``Metrics``: counters and histograms of one worker process, fed by ``Runtime._step``
  (``observe_step``) and the outbox publisher (``observe_publish``). Per process, as
  Prometheus expects: sum them over workers in the query.
* ``PipelineGauges``: computed when ``/metrics`` is scraped, from Redis and Kafka: consumer
  lag per input partition (Kafka end offset minus the offset Redis says was applied),
  Redis round trip (a PING), reachability, and the store-wide running totals that the
  commits keep (``StateStore.tallies``: cluster-wide, exactly once). Any process serving
  the API can expose these; scrape them from one of them (the totals are global).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from tierstream.stores.base import StateStore

if TYPE_CHECKING:
    from scoring.engine import Change
    from streams.kafka_probe import KafkaProbe
    from streams.processor import StepResult

# Steps commit up to BATCH_MAX (500) events in one Redis script: a few ms when healthy,
# seconds only while Redis or Kafka is struggling.
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
# A PING on loopback takes ~0.1 ms, in one zone ~0.5 ms; the store gives up at 1 s.
RTT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.25, 1.0)

# Kafka offset commits: a round trip to the group coordinator, milliseconds when healthy.
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0)
# Event to change: the record's Kafka time to the change handed to the producer. Tens of
# ms under load; minutes only while the worker catches up with a backlog.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
# Timer lateness: due moment to commit. The timer runs every 0.5 s, so under a second is
# on time; hours or days mean the worker was down (or caught up after a backlog).
LATENESS_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 21_600, 86_400, 604_800)

# StepResult.counts keys that are outcomes of one input message each.
OUTCOMES = ("applied", "duplicate", "outside_window", "already_applied")
NO_TIER = "none"  # label value for "not placed in a tier" (before the first purchase)


class Metrics:
    """Counters and histograms of one worker process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        # shard -> why the worker stopped it (an error it could not judge safe to skip)
        self.stopped: dict[int, str] = {}
        r = self.registry
        self.events = Counter(
            "tierstream_events",
            "Input messages handled, by outcome (applied, duplicate, outside_window, "
            "already_applied = redelivered and skipped, dead_letter)",
            ["outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "tierstream_dead_letters",
            "Input messages sent to the dead-letters topic, by error kind and source topic",
            ["kind", "topic"],
            registry=r,
        )
        self.changes = Counter(
            "tierstream_tier_changes",
            "Tier or segment changes queued for publishing, by cause",
            ["cause"],
            registry=r,
        )
        self.flows = Counter(
            "tierstream_tier_flows",
            f"Tier changes by previous and new tier ({NO_TIER!r}: not placed)",
            ["from_tier", "to_tier"],
            registry=r,
        )
        self.rescored = Counter(
            "tierstream_rescored",
            "Customers re-scored by the timer (time-driven changes)",
            registry=r,
        )
        self.batch_size = Histogram(
            "tierstream_batch_size",
            "Input messages per step (kind=input), customers per timer step (kind=timer)",
            ["kind"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.step_seconds = Histogram(
            "tierstream_step_seconds",
            "Seconds per step: load, score and the atomic commit (retries included)",
            ["kind"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.last_step = Gauge(
            "tierstream_last_step_timestamp_seconds",
            "Unix time of the last step of each owned shard (a stalled shard stops moving)",
            ["shard"],
            registry=r,
        )
        self.published = Counter(
            "tierstream_published",
            "Outbox entries (tier changes and dead letters) published to Kafka",
            registry=r,
        )
        self.redis_commit_seconds = Histogram(
            "tierstream_redis_commit_seconds",
            "Seconds of the atomic Redis commit of one step (state, offsets, outbox, schedule)",
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.kafka_commit_seconds = Histogram(
            "tierstream_kafka_commit_seconds",
            "Seconds to commit input offsets to the consumer group (advisory: Redis holds "
            "the applied offsets)",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self.kafka_commit_failures = Counter(
            "tierstream_kafka_commit_failures",
            "Offset commits to the consumer group that failed (retried next tick)",
            registry=r,
        )
        self.rebalances = Counter(
            "tierstream_rebalances",
            "Partition assignments this worker received from the consumer group",
            registry=r,
        )
        self.change_latency = Histogram(
            "tierstream_event_to_change_seconds",
            "From an input record's Kafka timestamp to its tier change handed to the producer",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.timer_lateness = Histogram(
            "tierstream_timer_lateness_seconds",
            "How late time-driven changes (inactivity) were committed after their due moment, "
            "on the worker's clock",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        # process_cpu_seconds_total, process_resident_memory_bytes, open fds, start time.
        ProcessCollector(registry=r)

    def observe_step(
        self,
        shard: int,
        seconds: float,
        result: StepResult,
        batch_size: int | None = None,
    ) -> None:
        """Record one step of ``Runtime._step``.

        ``batch_size`` defaults to what the step handled: every input message ends as one
        outcome (applied, duplicate, outside_window, already_applied, dead_letter:<kind>),
        so their sum is the number of messages; a timer step counts re-scored customers.
        """
        counts = result.counts
        if not counts and not result.changes:
            return  # a timer tick with nothing due is not a batch
        kind = "timer" if "rescored" in counts else "input"
        handled = 0
        for name, count in counts.items():
            if name in OUTCOMES:
                self.events.labels(name).inc(count)
                handled += count
            elif name.startswith("dead_letter:"):
                self.events.labels("dead_letter").inc(count)
                handled += count
        for letter in result.dead_letters:
            self.dead_letters.labels(letter.error_kind, letter.source_topic).inc()
        for change in result.changes:
            self.changes.labels(change.cause).inc()
            if change.previous_tier != change.new_tier:
                self.flows.labels(change.previous_tier or NO_TIER, change.new_tier or NO_TIER).inc()
        if counts.get("rescored"):
            self.rescored.inc(counts["rescored"])
            handled = counts["rescored"]
        self.batch_size.labels(kind).observe(handled if batch_size is None else batch_size)
        self.step_seconds.labels(kind).observe(seconds)
        self.last_step.labels(str(shard)).set(time.time())

    def observe_publish(self, count: int) -> None:
        if count > 0:
            self.published.inc(count)

    def watch_shards(self, outbox_depth: Callable[[], Mapping[int, int]]) -> None:
        """Report, at each scrape, the owned shards and each one's outbox depth."""
        self.registry.register(_ShardGauges(outbox_depth))

    def observe_change_latency(
        self, changes: Sequence[Change], received: Mapping[str, float], now: float
    ) -> None:
        """Event-driven changes: ``now`` minus the Kafka time of the customer's latest record
        in the step (``received``: customer id -> seconds)."""
        for change in changes:
            sent_at = received.get(change.customer_id)
            if sent_at is not None:
                self.change_latency.observe(max(0.0, now - sent_at))

    def observe_timer_lateness(self, changes: Sequence[Change], now: datetime) -> None:
        for change in changes:
            if change.cause == "inactivity":
                lateness = (now - change.occurred_at).total_seconds()
                self.timer_lateness.observe(max(0.0, lateness))


class _ShardGauges(Collector):
    """Owned shards and the depth of their outboxes, read from the runtime on scrape."""

    def __init__(self, outbox_depth: Callable[[], Mapping[int, int]]) -> None:
        self.outbox_depth = outbox_depth

    def collect(self) -> Iterator[Metric]:
        depths = dict(self.outbox_depth())
        owned = GaugeMetricFamily(
            "tierstream_owned_shards", "Shards (input partitions) this worker owns now"
        )
        owned.add_metric([], len(depths))
        yield owned
        depth = GaugeMetricFamily(
            "tierstream_outbox_depth",
            "Outbox entries (tier changes, dead letters) committed but not yet acknowledged "
            "by Kafka, per owned shard",
            labels=["shard"],
        )
        for shard, count in sorted(depths.items()):
            depth.add_metric([str(shard)], count)
        yield depth


class PipelineGauges(Collector):
    """Scrape-time measurements from Redis and Kafka (see the module docstring).

    Call ``await refresh()`` before rendering the registry; ``collect`` only reports what
    the last refresh found, so a scrape never blocks on I/O inside prometheus_client.
    """

    def __init__(
        self,
        store: StateStore,
        kafka: KafkaProbe | None,
        topics: Sequence[str],
        registry: CollectorRegistry,
    ) -> None:
        self.store = store
        self.kafka = kafka
        self.topics = tuple(topics)
        self.redis_seconds = Histogram(
            "tierstream_redis_ping_seconds",
            "Round trip of a Redis PING, measured on scrape and by health checks",
            buckets=RTT_BUCKETS,
            registry=registry,
        )
        self._redis_up = False
        self._kafka_up: bool | None = None
        self._lag: dict[tuple[str, int], int] = {}
        self._applied: dict[tuple[str, int], int] = {}
        self._tallies: dict[str, int] = {}
        self._lock = asyncio.Lock()
        registry.register(self)

    async def ping_redis(self) -> float:
        """PING the store (in a thread: the store is blocking); returns seconds, or raises."""
        started = time.perf_counter()
        await asyncio.to_thread(self.store.ping)
        seconds = time.perf_counter() - started
        self.redis_seconds.observe(seconds)
        return seconds

    async def refresh(self) -> None:
        async with self._lock:  # concurrent scrapes share one refresh's I/O
            await self._refresh()

    async def _refresh(self) -> None:
        try:
            await self.ping_redis()
            applied, tallies = await asyncio.to_thread(self._read_store)
            self._redis_up = True
        except Exception:  # noqa: BLE001 - reported as tierstream_redis_up 0
            self._redis_up = False
            applied, tallies = {}, {}
        self._applied, self._tallies = applied, tallies
        self._lag = {}
        if self.kafka is None:
            return
        partitions = [(t, p) for t in self.topics for p in range(self.store.partitions)]
        try:
            ends = await self.kafka.end_offsets(partitions)
        except Exception:  # noqa: BLE001 - reported as tierstream_kafka_up 0, no lag samples
            self._kafka_up = False
            return
        self._kafka_up = True
        if self._redis_up:
            # Nothing applied yet counts from 0; with retention that overstates lag.
            self._lag = {tp: max(0, end - applied.get(tp, 0)) for tp, end in ends.items()}

    def _read_store(self) -> tuple[dict[tuple[str, int], int], dict[str, int]]:
        applied = {
            (topic, shard): offset
            for shard in range(self.store.partitions)
            for topic, offset in self.store.offsets(shard).items()
        }
        return applied, self.store.tallies()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "tierstream_up", "Whether the last scrape reached the service", labels=["service"]
        )
        up.add_metric(["redis"], 1.0 if self._redis_up else 0.0)
        if self._kafka_up is not None:
            up.add_metric(["kafka"], 1.0 if self._kafka_up else 0.0)
        yield up
        lag = GaugeMetricFamily(
            "tierstream_consumer_lag",
            "Input messages not yet applied: Kafka end offset minus the offset Redis holds",
            labels=["topic", "partition"],
        )
        for (topic, partition), value in sorted(self._lag.items()):
            lag.add_metric([topic, str(partition)], value)
        yield lag
        applied = GaugeMetricFamily(
            "tierstream_applied_offset",
            "Next input offset to apply, per partition, as committed to Redis",
            labels=["topic", "partition"],
        )
        for (topic, partition), value in sorted(self._applied.items()):
            applied.add_metric([topic, str(partition)], value)
        yield applied
        yield from tally_metrics(self._tallies)


def tally_metrics(tallies: Mapping[str, int]) -> Iterator[Metric]:
    """The store's running totals as ``tierstream_store_*`` counters (cluster-wide)."""
    events = CounterMetricFamily(
        "tierstream_store_events",
        "Input events committed, by outcome (all workers, exactly once)",
        labels=["outcome"],
    )
    dead = CounterMetricFamily(
        "tierstream_store_dead_letters",
        "Dead letters committed, by error kind (all workers)",
        labels=["kind"],
    )
    changes = CounterMetricFamily(
        "tierstream_store_tier_changes",
        "Tier or segment changes committed, by cause (all workers)",
        labels=["cause"],
    )
    flows = CounterMetricFamily(
        "tierstream_store_tier_flows",
        "Tier changes committed, by previous and new tier (all workers)",
        labels=["from_tier", "to_tier"],
    )
    rescored = CounterMetricFamily(
        "tierstream_store_rescored", "Customers re-scored by timers (all workers)"
    )
    for name, value in sorted(tallies.items()):
        if name in OUTCOMES:
            events.add_metric([name], value)
        elif name == "rescored":
            rescored.add_metric([], value)
        elif name.startswith("dead_letter:"):
            dead.add_metric([name.removeprefix("dead_letter:")], value)
        elif name.startswith("change:"):
            changes.add_metric([name.removeprefix("change:")], value)
        elif name.startswith("flow:tier:"):
            previous, new = json.loads(name.removeprefix("flow:tier:"))
            flows.add_metric([previous or NO_TIER, new or NO_TIER], value)
    yield from (events, dead, changes, flows, rescored)
