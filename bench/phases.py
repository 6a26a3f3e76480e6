"""The measurements. Each returns a plain dict (one repeat); ``bench.run`` aggregates them.

Timing conventions (the same for the worker and the three baselines, all subprocesses):

* ``seconds``: from spawning the process until the last event is done (for the worker:
  every input offset applied in Redis AND every outbox drained to Kafka; for the peer: its
  final checkpoint committed, state, changelog and outputs included). Nothing is
  subtracted, so start-up (interpreter, imports, group join, shard acquisition) counts.
  ``eps = events / seconds``.
* ``startup_s``: from spawn to the first event done (worker: first applied offset).
* ``steady_eps``: events per second between 10% and 90% of the events done.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import redis

from bench.infra import (
    Child,
    PrivateRedis,
    Resources,
    ServiceEpoch,
    TopicSet,
    child_env,
    end_offsets,
    kafka_options,
    list_topics,
    load,
)
from bench.mix import MixSpec, generate, stamp
from scoring.days import day_start, utc_day
from scoring.engine import Scorer
from scoring.events import InputEvent, PurchaseEvent
from scoring.state import CustomerState
from streams.producer import event_json
from tierstream.settings import load_scoring_config
from tierstream.stores.redis import RedisStore

Log = Callable[[str], None]
POLL = 0.1  # seconds between progress polls of the worker's applied offsets


@dataclass
class Context:
    res: Resources
    workdir: Path
    topics: TopicSet  # the loaded throughput topics
    total: int  # messages on them
    log: Log
    timeout: float = 600.0
    naive_events: int | None = None  # the naive agent's share of the topics (None: all)
    peer_python: str | None = None  # the interpreter with quixstreams (infra.peer_python)
    worker_processes: int = 1  # tierstream worker --processes N


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), q))


def steady_rate(samples: Sequence[tuple[float, int]], total: int) -> float | None:
    """Events/s between 10% and 90% done, from (time, done) samples (interpolated)."""
    if len(samples) < 2 or total <= 0:
        return None
    times = np.array([t for t, _ in samples], dtype=float)
    done = np.array([n for _, n in samples], dtype=float)
    lo, hi = 0.1 * total, 0.9 * total
    if done[-1] < hi or done[0] > lo:
        return None
    # first moment each level is reached (samples are monotone in done)
    t_lo = float(np.interp(lo, done, times))
    t_hi = float(np.interp(hi, done, times))
    return (hi - lo) / (t_hi - t_lo) if t_hi > t_lo else None


def _epoch_note(before: ServiceEpoch, after: ServiceEpoch) -> str | None:
    if before == after:
        return None
    return f"a service restarted during this measurement ({before} -> {after})"


# ---------------------------------------------------------------------- baselines
def _run_consumer(
    ctx: Context,
    mode: str,
    extra_env: dict[str, str],
    expected: int | None = None,
    group: str | None = None,
    python: str | None = None,
) -> dict[str, Any]:
    """Spawn a baseline; time it from spawn until it has done ``expected`` events (the
    first ones it reads; default: all)."""
    expected = ctx.total if expected is None else min(expected, ctx.total)
    group = group or ctx.res.group(mode)
    out = ctx.workdir / f"{group}.jsonl"
    env = child_env(
        BENCH_BOOTSTRAP=ctx.res.bootstrap,
        BENCH_TOPICS=f"{ctx.topics['purchases']},{ctx.topics['engagements']}",
        BENCH_GROUP=group,
        BENCH_EXPECTED=str(expected),
        BENCH_PARTITIONS=str(ctx.topics.partitions),
        **extra_env,
    )
    epoch = ServiceEpoch.read(ctx.res.redis_url)
    args = ["-m", "bench.consumers", mode, str(out)]
    child = Child(args, env, ctx.workdir, group, python or sys.executable)
    spawned = child.started
    deadline = spawned + ctx.timeout
    first = done = None
    samples: list[tuple[float, int]] = []
    try:
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if out.exists():
                samples, first, done = [], None, None
                for line in out.read_text().splitlines():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # being written
                    first = record.get("first", first)
                    if "n" in record and "t" in record:
                        samples.append((record["t"] - spawned, record["n"]))
                    done = record.get("done", done)
            if done is not None:
                break
            if not child.alive():
                raise RuntimeError(f"{mode} consumer exited early:\n{child.tail()}")
        else:
            raise TimeoutError(f"{mode} consumer not done after {ctx.timeout}s:\n{child.tail()}")
    finally:
        child.stop()
    seconds = done - spawned
    return {
        "events": expected,
        "seconds": seconds,
        "eps": expected / seconds,
        "startup_s": first - spawned if first is not None else None,
        "steady_eps": steady_rate([(0.0, 0), *samples], expected),
        "progress": _thin(samples),
        "disturbed": _epoch_note(epoch, ServiceEpoch.read(ctx.res.redis_url)),
    }


def raw_consume(ctx: Context) -> dict[str, Any]:
    return _run_consumer(ctx, "raw", {})


def naive(ctx: Context) -> dict[str, Any]:
    namespace = ctx.res.namespace()
    result = _run_consumer(
        ctx,
        "naive",
        {"BENCH_REDIS_URL": ctx.res.redis_url, "BENCH_NAMESPACE": namespace},
        ctx.naive_events,
    )
    _unlink_namespace(ctx.res, namespace)
    return result


def peer(ctx: Context) -> dict[str, Any]:
    """The quix-streams peer over all the loaded events: its own group, a fresh output
    topic, its RocksDB state in the (temporary) work directory; the changelog topic it
    creates is deleted with the run's other topics (``Resources.internal_topics``)."""
    group = ctx.res.group("peer")
    output = ctx.res.topic("peer-out", ctx.topics.partitions)
    state_dir = ctx.workdir / f"{group}-state"
    result = _run_consumer(
        ctx,
        "peer",
        {"BENCH_OUTPUT_TOPIC": output, "BENCH_STATE_DIR": str(state_dir)},
        group=group,
        python=ctx.peer_python,
    )
    result["outputs"] = sum(end_offsets(ctx.res.bootstrap, [output]).values())
    changelogs = ctx.res.internal_topics(list_topics(ctx.res.bootstrap), [group])
    result["changelog_topics"] = len(changelogs)
    result["changelog_records"] = sum(end_offsets(ctx.res.bootstrap, changelogs).values())
    shutil.rmtree(state_dir, ignore_errors=True)
    return result


def _thin(samples: Sequence[tuple[float, int]], keep: int = 120) -> list[list[float]]:
    """At most ``keep`` evenly spaced samples, for the plot."""
    if len(samples) <= keep:
        return [[round(t, 3), n] for t, n in samples]
    step = len(samples) / keep
    picked = [samples[int(i * step)] for i in range(keep)] + [samples[-1]]
    return [[round(t, 3), n] for t, n in picked]


# -------------------------------------------------------------------------- worker
class WorkerRun:
    """One ``tierstream worker`` subprocess on its own namespace and consumer group."""

    def __init__(
        self, ctx: Context, topics: TopicSet, label: str, env: dict[str, str] | None = None
    ) -> None:
        self.ctx = ctx
        self.topics = topics
        self.namespace = ctx.res.namespace()
        self.app_id = ctx.res.group(label)
        self.label = label
        self.store = RedisStore(
            ctx.res.redis_url, partitions=topics.partitions, namespace=self.namespace
        )
        self.env = child_env(
            TIERSTREAM_KAFKA_BOOTSTRAP=ctx.res.bootstrap,
            TIERSTREAM_REDIS_URL=ctx.res.redis_url,
            TIERSTREAM_REDIS_NAMESPACE=self.namespace,
            TIERSTREAM_APP_ID=self.app_id,
            TIERSTREAM_CLOCK="wall",
            TIERSTREAM_DATA_DIR=str(ctx.workdir),  # Faust's data directory
            **topics.env(),
            **(env or {}),
        )
        self.child: Child | None = None

    def start(self, args: list[str] | None = None) -> float:
        processes = ["--processes", str(self.ctx.worker_processes)]
        self.child = Child(
            args or ["-m", "tierstream.cli", "worker", "--loglevel", "warning", *processes],
            self.env,
            self.ctx.workdir,
            self.app_id,
        )
        return self.child.started

    def check_alive(self) -> None:
        assert self.child is not None
        if not self.child.alive():
            raise RuntimeError(f"worker {self.app_id} exited:\n{self.child.tail()}")

    def applied(self, ends: dict[tuple[str, int], int]) -> int:
        done = 0
        for shard in range(self.topics.partitions):
            offsets = self.store.offsets(shard)
            for (topic, partition), end in ends.items():
                if partition == shard:
                    done += min(end, offsets.get(topic, 0))
        return done

    def outbox_empty(self) -> bool:
        return all(not self.store.outbox(p, 1) for p in range(self.topics.partitions))

    def input_ends(self) -> dict[tuple[str, int], int]:
        return end_offsets(
            self.ctx.res.bootstrap, [self.topics["purchases"], self.topics["engagements"]]
        )

    def wait_done(
        self, ends: dict[tuple[str, int], int], timeout: float, origin: float | None = None
    ) -> dict[str, Any]:
        """Poll until every offset in ``ends`` is applied and the outboxes are empty."""
        total = sum(ends.values())
        origin = time.monotonic() if origin is None else origin
        deadline = time.monotonic() + timeout
        samples: list[tuple[float, int]] = []
        first = applied_at = None
        while time.monotonic() < deadline:
            self.check_alive()
            now = time.monotonic()
            done = self.applied(ends)
            samples.append((now - origin, done))
            if first is None and done > 0:
                first = now - origin
            if done >= total:
                applied_at = now - origin
                break
            time.sleep(POLL)
        else:
            raise TimeoutError(
                f"worker applied {samples[-1][1] if samples else 0}/{total} in {timeout}s"
            )
        while not self.outbox_empty():
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("worker outbox not drained")
            time.sleep(POLL / 2)
        return {
            "first_applied_s": first,
            "all_applied_s": applied_at,
            "drained_s": time.monotonic() - origin,
            "samples": samples,
        }

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()

    def close(self) -> None:
        self.stop()
        self.store.close()


def _used_memory(client: redis.Redis[bytes]) -> int:
    return int(client.info("memory")["used_memory"])


def _namespace_footprint(
    client: redis.Redis[bytes], namespace: str, private: PrivateRedis | None
) -> dict[str, Any]:
    """Customers (state keys), the summed MEMORY USAGE of every key of the namespace, and
    the used_memory growth of an idle private Redis when those keys are restored there."""
    customers = 0
    usage = 0
    keys: list[bytes] = []
    for key in client.scan_iter(match=f"{{{namespace}:p*", count=5000):
        keys.append(key)
        if b"}:c:" in key:
            customers += 1
    for start in range(0, len(keys), 1000):
        pipe = client.pipeline(transaction=False)
        for key in keys[start : start + 1000]:
            pipe.memory_usage(key, samples=0)
        usage += sum(int(x or 0) for x in pipe.execute())
    idle = private.footprint(client, keys) if private is not None else None
    return {
        "customers": customers,
        "keys": len(keys),
        "memory_usage_sum": usage,
        "idle_used_memory_delta": idle,
    }


def _unlink_namespace(res: Resources, namespace: str) -> None:
    client = res.redis()
    try:
        for pattern in (f"{{{namespace}:p*", f"{namespace}:*"):
            batch = list(client.scan_iter(match=pattern, count=5000))
            for start in range(0, len(batch), 1000):
                client.unlink(*batch[start : start + 1000])
    finally:
        client.close()


def worker_throughput(ctx: Context, private: PrivateRedis | None = None) -> dict[str, Any]:
    """The real worker over the loaded topics: wall clock, fresh namespace and group.

    Memory per customer, three ways: the shared Redis' used_memory delta (what other
    tenants do moves it), the summed MEMORY USAGE of our keys (immune to them), and
    the used_memory delta of an idle private Redis holding exactly our keys (headline).
    """
    run = WorkerRun(ctx, ctx.topics, "worker")
    client = ctx.res.redis()
    epoch = ServiceEpoch.read(ctx.res.redis_url)
    try:
        ends = run.input_ends()
        total = sum(ends.values())
        outputs = [ctx.topics["tier-changes"], ctx.topics["dead-letters"]]
        # The repeats share these output topics: count this run's records only.
        out_before = end_offsets(ctx.res.bootstrap, outputs)
        before = _used_memory(client)
        spawned = run.start()
        progress = run.wait_done(ends, ctx.timeout, origin=spawned)
        run.stop()  # its connections and buffers are not state
        after = _used_memory(client)
        footprint = _namespace_footprint(client, run.namespace, private)
        out = end_offsets(ctx.res.bootstrap, outputs)
    finally:
        run.close()
        client.close()
    added = {tp: end - out_before.get(tp, 0) for tp, end in out.items()}
    changes = sum(v for (t, _), v in added.items() if t == ctx.topics["tier-changes"])
    dead = sum(v for (t, _), v in added.items() if t == ctx.topics["dead-letters"])
    seconds = progress["drained_s"]
    customers = footprint["customers"]
    result = {
        "events": total,
        "seconds": seconds,
        "eps": total / seconds,
        "startup_s": progress["first_applied_s"],
        "all_applied_s": progress["all_applied_s"],
        "steady_eps": steady_rate(progress["samples"], total),
        "tier_changes": changes,
        "dead_letters": dead,
        "customers": customers,
        "redis_used_memory_delta_shared": after - before,
        "redis_bytes_per_customer_shared": (after - before) / customers if customers else None,
        "redis_memory_usage_per_customer": footprint["memory_usage_sum"] / customers
        if customers
        else None,
        "redis_used_memory_delta_idle": footprint["idle_used_memory_delta"],
        "redis_bytes_per_customer": footprint["idle_used_memory_delta"] / customers
        if customers and footprint["idle_used_memory_delta"] is not None
        else ((after - before) / customers if customers else None),
        "redis_bytes_per_customer_source": "idle private Redis"
        if footprint["idle_used_memory_delta"] is not None
        else "shared Redis (no redis-server binary for a private one)",
        "redis_keys": footprint["keys"],
        "progress": _thin(progress["samples"]),
        "disturbed": _epoch_note(epoch, ServiceEpoch.read(ctx.res.redis_url)),
    }
    _unlink_namespace(ctx.res, run.namespace)
    return result


def anatomy(ctx: Context) -> dict[str, Any]:
    """The worker over the loaded topics once more, with timers around its steps
    (``bench.anatomy``): where the time of one ``take_events`` batch goes."""
    run = WorkerRun(ctx, ctx.topics, "anatomy")
    out = ctx.workdir / f"{run.app_id}-anatomy.json"
    try:
        ends = run.input_ends()
        total = sum(ends.values())
        spawned = run.start(["-m", "bench.anatomy", str(out)])
        progress = run.wait_done(ends, ctx.timeout, origin=spawned)
        run.stop()  # SIGTERM: the child writes its final totals at exit
    finally:
        run.close()
    _unlink_namespace(ctx.res, run.namespace)
    data = json.loads(out.read_text())
    seconds, calls = data["seconds"], data["calls"]
    batches = max(1, calls.get("handle", 0))
    busy_from = data["first"].get("handle", 0.0)
    # The child's clock starts at its import of bench.anatomy, shortly after spawn.
    active = progress["drained_s"] - busy_from

    def per_event_us(value: float) -> float:
        return value / total * 1e6

    handle = seconds.get("handle", 0.0)
    process = seconds.get("process", 0.0)  # one shard's step, of which:
    parse, apply = seconds.get("parse", 0.0), seconds.get("apply", 0.0)
    commit = seconds.get("commit", 0.0)  # the commit script and publish, of which:
    publish = seconds.get("publish", 0.0)
    return {
        "events": total,
        "seconds": progress["drained_s"],
        "eps": total / progress["drained_s"],
        "steady_eps": steady_rate(progress["samples"], total),
        "batches": batches,
        "events_per_batch": calls.get("handle.items", 0) / batches,
        # _step calls of the input agent and of the rescore timer (one per shard per tick)
        "steps_per_batch_incl_timer": calls.get("step", 0) / batches,
        "events_per_process_call": calls.get("process.items", 0) / max(1, calls.get("process", 0)),
        "ms_per_batch": {
            "handle": handle / batches * 1e3,
            "process": process / batches * 1e3,
            "publish": publish / batches * 1e3,
        },
        # Shards of a batch run concurrently, so stage times overlap: per-event figures are
        # wall time summed over the shards' steps, and can add up to more than handle.
        "us_per_event": {
            "parse (pure)": per_event_us(parse),
            "apply: score and encode (pure)": per_event_us(apply),
            "commit script, awaited": per_event_us(commit - publish),
            "publish (enqueue on the producer)": per_event_us(publish),
            "load, awaited (rest of process)": per_event_us(process - parse - apply - commit),
            "handle (all shards of a batch)": per_event_us(handle),
            "outside handle (Faust's consumer: fetch, messages)": per_event_us(active - handle),
            "total (first batch to drained)": per_event_us(active),
        },
    }


# ------------------------------------------------------- latency and inactivity lag
def next_midnight(now: datetime) -> datetime:
    return day_start(utc_day(now) + 1)


def inactivity_mix(
    midnight: datetime, customers: int, seed: int
) -> tuple[list[InputEvent], dict[str, int]]:
    """Purchases that put ``customers`` customers on a recency cut at ``midnight``.

    70% made their last purchase 31 days before (R 5 -> 4 at midnight), 30% 91 days
    before (R 4 -> 3), each with 0-2 earlier purchases in the 60 days before that.
    Returns the events and, per customer, the recency (days) reached at midnight.
    """
    rng = np.random.default_rng(seed)
    events: list[InputEvent] = []
    crossing: dict[str, int] = {}
    day = utc_day(midnight)
    for i in range(customers):
        cid = f"i{i:06d}"
        gap = 31 if rng.random() < 0.7 else 91
        crossing[cid] = gap
        days = [day - gap] + sorted(
            (day - gap - int(rng.integers(1, 60)) for _ in range(int(rng.integers(0, 3)))),
        )
        for j, d in enumerate(sorted(set(days))):
            at = day_start(d) + timedelta(seconds=float(rng.integers(0, 86_399)))
            events.append(
                PurchaseEvent(
                    event_id=f"inact-{seed}-{i}-{j}",
                    customer_id=cid,
                    occurred_at=at,
                    amount=Decimal(f"{max(1.0, float(rng.lognormal(np.log(40), 1.0))):.2f}"),
                    currency="USD",
                )
            )
    events.sort(key=lambda e: e.occurred_at)
    return events, crossing


def expected_inactivity(
    scorer: Scorer, events: Sequence[InputEvent], before: datetime, midnight: datetime
) -> set[str]:
    """Customers whose tier or segment changes at ``midnight`` with no new event."""
    states: dict[str, CustomerState] = {}
    for event in events:
        state = states.setdefault(event.customer_id, CustomerState(event.customer_id))
        scorer.apply(state, event, before)
    return {cid for cid, state in states.items() if scorer.advance(state, midnight)}


class ChangeCollector:
    """Reads a tier-changes topic from the beginning, stamping each record on arrival."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.records: list[tuple[int, int, bytes]] = []  # (arrival ns, partition, value)
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
            **kafka_options(),
        )
        await self.consumer.start()
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=50, max_records=10_000)
            arrived = time.time_ns()
            for tp, records in batches.items():
                self.records.extend((arrived, tp.partition, r.value) for r in records)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        await self.consumer.stop()


async def _paced_send(
    bootstrap: str,
    topics: TopicSet,
    records: Sequence[tuple[bool, bytes, bytes, str]],
    rate: float,
    shift_s: float,
) -> tuple[dict[tuple[str, datetime], int], float]:
    """Send ``records`` at ``rate`` per second, each dated (in the worker's clock) at send.

    Returns (customer id, occurred_at) -> send time (ns since the epoch, real clock) and
    the achieved rate.
    """
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, **kafka_options()
    )
    await producer.start()
    sent: dict[tuple[str, datetime], int] = {}
    last_us = 0
    shift_us = int(shift_s * 1e6)
    try:
        started = time.monotonic()
        i = 0
        n = len(records)
        while i < n:
            due = min(n, int((time.monotonic() - started) * rate) + 1)
            while i < due:
                is_purchase, key, value, customer = records[i]
                now_ns = time.time_ns()
                at_us = max(last_us + 1, now_ns // 1000 + shift_us)
                last_us = at_us
                at = datetime.fromtimestamp(at_us // 1_000_000, UTC).replace(
                    microsecond=at_us % 1_000_000
                )
                topic = topics["purchases"] if is_purchase else topics["engagements"]
                await producer.send(topic, stamp(value, at), key=key)
                sent[(customer, at)] = now_ns
                i += 1
            # Sleep until the next event is due (at least 2 ms: fewer wake-ups of this
            # process, which shares the cores with the worker; the producer lingers 5 ms).
            await asyncio.sleep(max(0.002, started + i / rate - time.monotonic()))
        elapsed = time.monotonic() - started
        await producer.flush()
    finally:
        await producer.stop()
    return sent, n / elapsed if elapsed > 0 else math.inf


def _shift_bounds(
    changes: Sequence[dict[str, Any]],
) -> dict[int, tuple[float, float]]:
    """Per shard: bounds (lo, hi) on worker clock minus real time, in seconds.

    A change is emitted after the event that caused it was sent and before it is
    consumed: emitted_at - arrival <= shift <= emitted_at - sent.
    """
    lo: dict[int, float] = defaultdict(lambda: -math.inf)
    hi: dict[int, float] = defaultdict(lambda: math.inf)
    for c in changes:
        p, emitted = c["partition"], c["emitted"]
        lo[p] = max(lo[p], emitted - c["arrival"])
        if c.get("sent") is not None:
            hi[p] = min(hi[p], emitted - c["sent"])
    return {p: (lo[p], hi[p]) for p in lo}


async def _latency_and_inactivity(
    ctx: Context,
    rate: float,
    duration: float,
    inactive: int,
    startup_budget: float,
    seed: int,
) -> dict[str, Any]:
    res = ctx.res
    topics = res.topic_set("lat", ctx.topics.partitions)
    midnight = next_midnight(datetime.now(UTC))
    # Midnight falls two thirds into the paced phase (when start-up is within budget).
    lead = startup_budget + duration * 2 / 3
    clock_start = midnight - timedelta(seconds=lead)
    preload, _ = inactivity_mix(midnight, inactive, seed)
    preload_ids = {e.customer_id for e in preload}
    scorer = Scorer(load_scoring_config(None))
    expected = expected_inactivity(scorer, preload, clock_start, midnight)
    load(res.bootstrap, topics, preload)
    n_paced = int(rate * duration)
    paced_mix = generate(
        MixSpec(events=n_paced, seed=seed + 1, days=0.0001),
        None,
        id_prefix="l",
        customer_prefix="l",
    )
    records = [
        (isinstance(e, PurchaseEvent), e.customer_id.encode(), event_json(e), e.customer_id)
        for e in paced_mix.events
    ]

    collector = ChangeCollector(res.bootstrap, topics["tier-changes"], topics.partitions)
    await collector.start()
    run = WorkerRun(ctx, topics, "latency", {"TIERSTREAM_CLOCK_START": clock_start.isoformat()})
    epoch = ServiceEpoch.read(res.redis_url)
    try:
        spawned_real = time.time()
        spawned = run.start()
        ends = await asyncio.to_thread(run.input_ends)
        pre = await asyncio.to_thread(run.wait_done, ends, ctx.timeout, spawned)
        startup = pre["first_applied_s"]
        # Estimate the worker's clock shift from the preload's changes (lower bound).
        await asyncio.sleep(0.3)
        parsed = _parse_changes(collector.records, {})
        bounds = _shift_bounds(parsed)
        fallback = clock_start.timestamp() - spawned_real  # the clock starts after spawn
        shift = max((lo for lo, _ in bounds.values()), default=fallback)
        midnight_real = midnight.timestamp() - shift
        begin = midnight_real - duration * 2 / 3
        wait = begin - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        paced_started = time.time()
        sent, achieved = await _paced_send(res.bootstrap, topics, records, rate, shift)
        paced_ended = time.time()
        ends = await asyncio.to_thread(run.input_ends)
        post = await asyncio.to_thread(run.wait_done, ends, ctx.timeout)
        backlog_s = post["drained_s"]
        # Wait for midnight's changes (and a margin) to reach the collector.
        deadline = max(time.time(), midnight_real) + 30
        while time.time() < deadline:
            got = {c["customer_id"] for c in _parse_changes(collector.records, {}, inactivity=True)}
            if expected <= got and time.time() > midnight_real + 3:
                break
            await asyncio.sleep(0.25)
        await asyncio.to_thread(run.check_alive)
        dead = await asyncio.to_thread(end_offsets, res.bootstrap, [topics["dead-letters"]])
    finally:
        await collector.stop()
        await asyncio.to_thread(run.close)
    changes = _parse_changes(collector.records, sent)
    bounds = _shift_bounds(changes)
    latencies = [(c["arrival"] - c["sent"]) * 1000 for c in changes if c.get("sent") is not None]
    # Split: sent -> the worker's step began (its clock, shift midpoint) -> consumed.
    to_step: list[float] = []
    from_step: list[float] = []
    for c in changes:
        lo_hi = bounds.get(c["partition"])
        if c.get("sent") is None or lo_hi is None or not math.isfinite(lo_hi[1] - lo_hi[0]):
            continue
        step_real = c["emitted"] - (lo_hi[0] + lo_hi[1]) / 2
        to_step.append((step_real - c["sent"]) * 1000)
        from_step.append((c["arrival"] - step_real) * 1000)
    # Latency outside the seconds right after midnight (the timer's burst), for reference.
    quiet = [
        (c["arrival"] - c["sent"]) * 1000
        for c in changes
        if c.get("sent") is not None and not (midnight_real - 0.5 <= c["sent"] <= midnight_real + 3)
    ]
    lag_worker: list[float] = []
    lag_upper: list[float] = []
    lag_lower: list[float] = []
    seen: set[str] = set()
    m = midnight.timestamp()
    for c in changes:
        if c["cause"] != "inactivity" or c["occurred"] != m or c["customer_id"] not in expected:
            continue
        if c["customer_id"] in seen:
            continue  # a redelivery: the first arrival counts
        seen.add(c["customer_id"])
        lo, hi = bounds.get(c["partition"], (math.nan, math.nan))
        lag_worker.append((c["emitted"] - m) * 1000)
        lag_upper.append((c["arrival"] - (m - hi)) * 1000)
        lag_lower.append((c["arrival"] - (m - lo)) * 1000)
    last_preload = max(
        (
            c["emitted"]
            for c in changes
            if c["customer_id"] in preload_ids and c["cause"] == "purchase"
        ),
        default=None,
    )
    _unlink_namespace(res, run.namespace)
    inactivity_valid = last_preload is not None and last_preload < m
    if not inactivity_valid:
        lag_worker, lag_upper, lag_lower = [], [], []  # not the timer's doing: void
    widths = [hi - lo for lo, hi in bounds.values() if math.isfinite(hi - lo)]
    return {
        "offered_rate": rate,
        "achieved_send_rate": achieved,
        "duration_s": duration,
        "events_sent": len(sent),
        "worker_startup_s": startup,
        "startup_budget_s": startup_budget,
        "paced_started_before_midnight_s": midnight_real - paced_started,
        "paced_ended_after_midnight_s": paced_ended - midnight_real,
        "backlog_after_last_send_s": backlog_s,
        "changes_matched": len(latencies),
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p99_ms": percentile(latencies, 99),
        "latency_max_ms": max(latencies) if latencies else None,
        "latency_p99_outside_midnight_ms": percentile(quiet, 99),
        "sent_to_step_p50_ms": percentile(to_step, 50),
        "sent_to_step_p99_ms": percentile(to_step, 99),
        "step_to_consumed_p50_ms": percentile(from_step, 50),
        "step_to_consumed_p99_ms": percentile(from_step, 99),
        # Drained within 0.25 s of the last send: no queue had built up during the phase.
        "kept_up": backlog_s < 0.25,
        "inactivity_expected": len(expected),
        "inactivity_seen": len(seen),
        "inactivity_lag_worker_p50_ms": percentile(lag_worker, 50),
        "inactivity_lag_worker_p99_ms": percentile(lag_worker, 99),
        "inactivity_lag_p50_ms": percentile(lag_upper, 50),
        "inactivity_lag_p99_ms": percentile(lag_upper, 99),
        "inactivity_lag_p99_ms_lower_bound": percentile(lag_lower, 99),
        "clock_shift_uncertainty_ms": max(widths) * 1000 if widths else None,
        # > 0: the preload's purchases were applied before midnight in the worker's clock,
        # so the midnight changes were the timer's (else the measurement is void).
        "inactivity_valid": inactivity_valid,
        "preload_margin_before_midnight_s": m - last_preload if last_preload else None,
        "dead_letters": sum(dead.values()),
        "latency_histogram_ms": _histogram(latencies),
        "disturbed": _epoch_note(epoch, ServiceEpoch.read(res.redis_url)),
    }


def _parse_changes(
    records: Sequence[tuple[int, int, bytes]],
    sent: dict[tuple[str, datetime], int],
    *,
    inactivity: bool = False,
) -> list[dict[str, Any]]:
    out = []
    for arrival_ns, partition, value in list(records):
        body = json.loads(value)
        if inactivity and body["cause"] != "inactivity":
            continue
        occurred = datetime.fromisoformat(body["occurred_at"])
        emitted = body.get("emitted_at")
        sent_ns = sent.get((body["customer_id"], occurred))
        out.append(
            {
                "customer_id": body["customer_id"],
                "cause": body["cause"],
                "partition": partition,
                "arrival": arrival_ns / 1e9,
                "occurred": occurred.timestamp(),
                "emitted": datetime.fromisoformat(emitted).timestamp() if emitted else math.nan,
                "sent": None if sent_ns is None else sent_ns / 1e9,
            }
        )
    return out


def _histogram(values: Sequence[float]) -> dict[str, list[float]]:
    if not values:
        return {"edges": [], "counts": []}
    edges = np.geomspace(max(0.5, min(values)), max(values) + 1, 40)
    counts, edges = np.histogram(values, bins=edges)
    return {"edges": [round(float(e), 3) for e in edges], "counts": counts.tolist()}


def latency_and_inactivity(
    ctx: Context,
    *,
    rate: float,
    duration: float,
    inactive: int,
    startup_budget: float,
    seed: int,
) -> dict[str, Any]:
    return asyncio.run(_latency_and_inactivity(ctx, rate, duration, inactive, startup_budget, seed))


# -------------------------------------------------------------------------- replay
_CDNOW: list[InputEvent] | None = None


def cdnow_events() -> list[InputEvent]:
    global _CDNOW
    if _CDNOW is None:
        from tierstream.readers import bundled_cdnow_path, read_events
        from tierstream.replay import ReplayStats, collect

        stats = ReplayStats()
        _CDNOW = collect(read_events(bundled_cdnow_path(), "cdnow"), stats, strict=False)
    return _CDNOW


def replay_speed(limit: int | None = None) -> dict[str, Any]:
    """The embedded replay of CDNOW (as tests/acceptance/test_cdnow_reference.py does), events/s."""
    from tierstream.replay import ReplayStats, replay

    events = cdnow_events()
    if limit is not None:
        events = events[:limit]
    stats = ReplayStats()
    changes = 0

    def count(_change: object) -> None:
        nonlocal changes
        changes += 1

    replay(
        events,
        Scorer(load_scoring_config(None)),
        as_of=datetime(1998, 7, 1, tzinfo=UTC),
        emit=count,
        stats=stats,
    )
    return {
        "events": stats.events,
        "seconds": stats.seconds,
        "eps": stats.events_per_second,
        "changes": changes,
    }


def summarize(values: Sequence[float | None]) -> dict[str, float | None]:
    clean = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not clean:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {
        "median": statistics.median(clean),
        "min": min(clean),
        "max": max(clean),
        "n": len(clean),
    }
