"""The Faust wiring: input agent, rescore timer, outbox publisher, partition ownership.

All state logic lives in ``ShardProcessor``; this module moves bytes between Kafka and
it. Store calls are blocking (redis-py) and run in worker threads; a per-shard asyncio
lock keeps one step at a time per shard, so the agent and the timer never interleave.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar

import faust
from aiokafka.structs import OffsetAndMetadata
from aiokafka.structs import TopicPartition as AIOKafkaTP
from faust.types import TP, EventT

from models.snapshot import SegmentSnapshot
from scoring.days import utc_day
from scoring.engine import Scorer
from scoring.events import Cause, EngagementEvent, PurchaseEvent
from scoring.quantiles import population_thresholds
from scoring.scores import Thresholds
from streams.clock import Clock, EventClock
from streams.deadletters import RawMessage
from streams.metrics import Metrics
from streams.processor import CHANGE_ENTRY, ShardProcessor, StepResult, decode_entry
from tierstream.segments import SNAPSHOT_META, SnapshotBehaviour
from tierstream.settings import Settings
from tierstream.stores.base import FencedError, StateStore
from tierstream.topics import kafka_security_from_env

log = logging.getLogger("tierstream.worker")
T = TypeVar("T")

# Redis with appendfsync everysec may lose up to ~2 s of writes if its host crashes;
# committing Kafka offsets this far behind Redis keeps Kafka from ever skipping them.
KAFKA_COMMIT_LAG = 3.0

# Store metadata key of the published quintile cut points.
THRESHOLDS_META = "thresholds"

# Transient failures worth waiting out: Redis or Kafka briefly unreachable.
try:  # redis is optional for the embedded store
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    TRANSIENT: tuple[type[BaseException], ...] = (
        RedisConnectionError,
        RedisTimeoutError,
        ConnectionError,
        TimeoutError,
    )
except ImportError:  # pragma: no cover
    TRANSIENT = (ConnectionError, TimeoutError)


class Runtime:
    """Owned shards and their processors, plus counters, for one worker process."""

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        scorer: Scorer,
        clock_factory: Callable[[], Clock],
        send: Callable[[str, bytes | None, bytes], Awaitable[Any]],
        flush: Callable[[], Awaitable[Any]],
        owns: Callable[[int], bool] = lambda shard: True,
        commit_positions: Callable[[int, dict[str, int]], Awaitable[Any]] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.store = store
        self.scorer = scorer
        self.clock_factory = clock_factory
        self._send = send
        self._flush = flush
        self._owns = owns
        self._commit_positions = commit_positions
        self.processors: dict[int, ShardProcessor] = {}
        self._next_threshold_check = 0.0
        self._next_threshold_compute = 0.0
        self._next_segments_check = 0.0
        self._swept: dict[int, int] = {}  # shard -> segment model version it was swept with
        # (monotonic time, applied offsets) per shard, waiting to be old enough to commit
        self._positions: dict[int, deque[tuple[float, dict[str, int]]]] = defaultdict(deque)
        self.locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.counts: Counter[str] = Counter()
        self.event_kinds: dict[str, type[PurchaseEvent] | type[EngagementEvent]] = {
            settings.topic_purchases: PurchaseEvent,
            settings.topic_engagements: EngagementEvent,
        }
        self.stopping = False

    # ------------------------------------------------------------ ownership
    async def assign(self, shards: Iterable[int]) -> None:
        wanted = set(shards)
        for shard in list(self.processors):
            if shard not in wanted:
                async with self.locks[shard]:
                    self.processors.pop(shard, None)
                    log.info("released shard %d", shard)
        for shard in sorted(wanted - set(self.processors)):
            async with self.locks[shard]:
                processor = await self._acquire(shard)
                # A predecessor may have crashed between commit and publish.
                await self._publish_outbox(processor)

    async def _acquire(self, shard: int) -> ShardProcessor:
        """Take the shard (fencing any previous owner) and read its applied offsets."""
        lease = await self._retry(partial(self.store.acquire, shard), "acquire")
        processor = await self._retry(
            partial(
                ShardProcessor,
                self.store,
                self.scorer,
                lease,
                self.event_kinds,
                self.clock_factory(),
            ),
            "load offsets",
        )
        self.processors[shard] = processor
        log.info("acquired shard %d (epoch %d)", shard, lease.epoch)
        return processor

    # ---------------------------------------------------------------- steps
    async def handle(self, events: Sequence[EventT[Any]]) -> None:
        by_shard: dict[int, list[RawMessage]] = defaultdict(list)
        for event in events:
            message = event.message
            by_shard[message.partition].append(
                RawMessage(
                    message.topic, message.partition, message.offset, message.key, message.value
                )
            )
        # Shards are independent (own lock, own commit, own outbox): while one waits for
        # Redis or for Kafka's acks, another computes.
        await asyncio.gather(
            *(
                self._step(shard, partial(_process, messages=messages))
                for shard, messages in by_shard.items()
            )
        )

    async def refresh_thresholds(self) -> None:
        """Quintile scoring: the owner of shard 0 recomputes the cut points from the whole
        population every ``threshold_refresh_seconds`` and publishes them, versioned, in the
        store; every worker adopts a newer version and re-scores its shards' customers
        (cause ``threshold_update``). Fixed cut points need none of this."""
        if self.scorer.config.scores.method != "quintiles":
            return
        now = time.monotonic()
        if now < self._next_threshold_check:
            return
        self._next_threshold_check = now + self.settings.threshold_check_seconds
        published = await self._retry(partial(self.store.get_meta, THRESHOLDS_META), "thresholds")
        current = Thresholds.from_dict(json.loads(published)) if published else None
        leader = self.processors.get(0)
        if leader is not None and now >= self._next_threshold_compute:
            self._next_threshold_compute = now + self.settings.threshold_refresh_seconds
            states = await self._retry(lambda: list(self.store.scan()), "scan for thresholds")
            version = max(self.scorer.thresholds.version, current.version if current else 0) + 1
            fresh = population_thresholds(self.scorer, states, utc_day(leader.clock.now()), version)
            if fresh.version == version:  # an empty population keeps the old cut points
                payload = json.dumps(fresh.to_dict()).encode()
                await self._retry(partial(self.store.set_meta, THRESHOLDS_META, payload), "publish")
                current = fresh
                log.info(
                    "published score cut points version %d (%d customers)", version, len(states)
                )
        if current is None or current.version <= self.scorer.thresholds.version:
            return
        because = f"score cut points recomputed from the population (version {current.version})"
        for shard in await self._adopt(self.scorer.with_thresholds(current)):
            await self._rescore_shard(shard, "threshold_update", because)
        self.counts["threshold_updates"] += 1

    async def _adopt(self, scorer: Scorer) -> list[int]:
        """Score with ``scorer`` from now on; the shards whose processor now uses it."""
        self.scorer = scorer
        adopted = []
        for shard in list(self.processors):
            async with self.locks[shard]:
                processor = self.processors.get(shard)
                if processor is not None:
                    processor.scorer = scorer
                    adopted.append(shard)
        return adopted

    async def _rescore_shard(self, shard: int, cause: Cause, because: str) -> bool:
        """Re-score every customer of ``shard``, 500 per atomic step (after new cut points
        or a new segment model). True if this worker still holds the shard at the end."""
        ids = await self._retry(partial(self.store.customer_ids, shard), "list customers")
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            await self._step(shard, partial(_rescore, ids=chunk, cause=cause, because=because))
        return shard in self.processors

    async def refresh_segments(self) -> None:
        """Adopt a newer behavioural segment snapshot and re-assign every customer.

        Snapshots are learned in one place (``tierstream segments``) and published,
        versioned, in the store. Every ``segments_check_seconds`` each worker looks for a
        newer version, re-scores with it, and sweeps the shards it owns (cause
        ``model_update`` for every customer the new model moves). A per-shard marker in
        the store records the version a shard was fully swept with, so a sweep cut short
        by a crash or a rebalance is finished by the shard's next owner.
        """
        now = time.monotonic()
        if now < self._next_segments_check:
            return
        self._next_segments_check = now + self.settings.segments_check_seconds
        raw = await self._retry(partial(self.store.get_meta, SNAPSHOT_META), "segment model")
        if raw is None:
            return
        adopted = self.scorer.behaviour
        snapshot = SegmentSnapshot.from_bytes(raw)  # a few hundred bytes: cheap to parse
        if adopted is None or snapshot.version > adopted.version:
            await self._adopt(self.scorer.with_behaviour(SnapshotBehaviour(snapshot)))
            log.info("adopted behavioural segment model version %d", snapshot.version)
            self.counts["model_updates"] += 1
        assert self.scorer.behaviour is not None
        version = self.scorer.behaviour.version
        because = f"behavioural segments re-learned (segment model v{version})"
        for shard in list(self.processors):
            if self._swept.get(shard, 0) >= version:
                continue  # known from an earlier check: markers only ever grow
            marker = f"segments_swept:{shard}"
            swept = await self._retry(partial(self.store.get_meta, marker), "sweep marker")
            if not (swept is not None and int(swept) >= version):
                if not await self._rescore_shard(shard, "model_update", because):
                    continue  # lost the shard: its new owner finishes the sweep
                payload = str(version).encode()
                await self._retry(partial(self.store.set_meta, marker, payload), "sweep marker")
            self._swept[shard] = version

    async def tick(self) -> None:
        await self.refresh_thresholds()
        await self.refresh_segments()
        for shard in list(self.processors):
            await self._step(shard, ShardProcessor.advance_due)
            processor = self.processors.get(shard)
            if processor is not None and self._commit_positions is not None and self._owns(shard):
                # Kafka's committed offsets only ever repeat what Redis said was applied a
                # few seconds ago, so a restart, a rebalance or even a Redis host crash that
                # loses its last second (appendfsync everysec) re-delivers but never skips.
                now = time.monotonic()
                history = self._positions[shard]
                history.append((now, dict(processor.offsets)))
                durable = None
                while history and now - history[0][0] >= KAFKA_COMMIT_LAG:
                    durable = history.popleft()[1]
                if durable is not None:
                    await self._commit_positions(shard, durable)

    async def _step(self, shard: int, work: Callable[[ShardProcessor], StepResult]) -> None:
        async with self.locks[shard]:
            for _attempt in range(3):
                processor = self.processors.get(shard)
                if processor is None:
                    if not self._owns(shard):
                        # Buffered messages of a partition handed to another worker: it
                        # re-reads them from the offsets Redis holds; nothing is lost here.
                        self.counts["not_owned"] += 1
                        return
                    processor = await self._acquire(shard)
                started = time.monotonic()
                try:
                    result = await self._retry(
                        partial(work, processor), f"shard {shard} step", on_retry=processor.refresh
                    )
                except FencedError as exc:
                    log.warning("%s; re-reading the shard before trying again", exc)
                    self.processors.pop(shard, None)
                    continue
                self.counts.update(result.counts)
                if self.metrics is not None:
                    self.metrics.observe_step(shard, time.monotonic() - started, result)
                await self._publish_outbox(processor)
                return
            self.counts["contended"] += 1

    async def _publish_outbox(self, processor: ShardProcessor) -> None:
        """Publish queued tier changes and dead letters, then drop them from the outbox.

        A crash between publishing and dropping re-publishes them: at-least-once, with
        the same event ids, which is what the tier-changes contract promises.
        """
        s = self.settings
        while True:
            entries = await self._retry(
                partial(self.store.outbox, processor.shard, 1000), "read outbox"
            )
            if not entries:
                return
            pending = []
            for entry in entries:
                kind, key, value = decode_entry(entry)
                topic = s.topic_tier_changes if kind == CHANGE_ENTRY else s.topic_dead_letters
                pending.append(await self._send_with_retry(topic, key, value))
            await self._kafka_retry(self._flush, "flush producer")
            for future in pending:
                await self._kafka_retry(partial(_awaited, future), "publish")
            try:
                await self._retry(
                    partial(self.store.ack, processor.lease, len(entries)), "ack outbox"
                )
            except FencedError:
                self.processors.pop(processor.shard, None)
                return
            self.counts["published"] += len(entries)
            if self.metrics is not None:
                self.metrics.observe_publish(len(entries))

    # ------------------------------------------------------------- retrying
    async def _retry(
        self,
        call: Callable[[], T],
        what: str,
        on_retry: Callable[[], None] | None = None,
    ) -> T:
        """Run a blocking store call in a thread; wait out Redis outages with backoff."""
        delay = 0.1
        while True:
            try:
                return await asyncio.to_thread(call)
            except TRANSIENT as exc:
                self.counts["store_retries"] += 1
                log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                if on_retry is not None:
                    try:
                        await asyncio.to_thread(on_retry)
                    except TRANSIENT:
                        pass

    async def _send_with_retry(self, topic: str, key: bytes | None, value: bytes) -> Any:
        return await self._kafka_retry(partial(self._send, topic, key, value), f"send to {topic}")

    async def _kafka_retry(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        delay = 0.1
        while True:
            try:
                return await call()
            except Exception as exc:  # noqa: BLE001 - any producer error: keep the data, retry
                self.counts["kafka_retries"] += 1
                log.warning("%s failed (%r); retrying in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


def _process(processor: ShardProcessor, messages: Sequence[RawMessage]) -> StepResult:
    return processor.process(messages)


def _rescore(processor: ShardProcessor, ids: list[str], cause: Cause, because: str) -> StepResult:
    return processor.rescore(ids, cause, because)


async def _awaited(future: Awaitable[T]) -> T:
    return await future


async def commit_in_consumer_thread(app: faust.App, positions: dict[TP, int]) -> bool:
    """Commit explicit offsets; a failure is logged and retried next tick, never fatal.

    Faust's own commit path crashes the app on any commit error (a broker restart, say);
    these commits are advisory (Redis holds the truth), so a failed one only means a
    restart would re-read, and skip, a little more.
    """
    thread = app.consumer._thread  # type: ignore[attr-defined]  # Faust's aiokafka thread

    async def commit() -> bool:
        consumer = thread._ensure_consumer()
        try:
            await consumer.commit(
                {
                    AIOKafkaTP(tp.topic, tp.partition): OffsetAndMetadata(offset, "")
                    for tp, offset in positions.items()
                }
            )
        except Exception as exc:  # noqa: BLE001 - advisory commit: keep going
            log.warning("committing input offsets failed (%r); retrying later", exc)
            return False
        return True

    result: bool = await thread.call_thread(commit)
    return result


def faust_credentials(options: dict[str, Any]) -> Any:
    """Faust credentials from the TIERSTREAM_KAFKA_* security settings (None: plaintext)."""
    protocol = options.get("security_protocol", "PLAINTEXT")
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=options.get("ssl_cafile"))
        if options.get("ssl_certfile"):
            context.load_cert_chain(
                options["ssl_certfile"], options.get("ssl_keyfile"), options.get("ssl_password")
            )
        context.check_hostname = options.get("ssl_check_hostname", True)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=options.get("sasl_plain_username"),
        password=options.get("sasl_plain_password"),
        mechanism=options.get("sasl_mechanism", "PLAIN"),
        ssl_context=context,
    )


def build_app(settings: Settings, store: StateStore, scorer: Scorer) -> faust.App:
    """The Faust app of ``tierstream worker``."""
    datadir = settings.data_dir / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=faust_credentials(kafka_security_from_env()),
        # Faust keeps a data directory even with the memory store: not in the work tree.
        datadir=str(datadir),
        store="memory://",
        web_enabled=settings.web_port is not None,
        web_port=settings.web_port or 6066,
        web_bind="127.0.0.1",
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=True,  # Faust's own assignor topic; ours are pre-created
        topic_replication_factor=1,
        topic_partitions=settings.partitions,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        producer_acks=-1,
        key_serializer="raw",
        value_serializer="raw",
    )
    inputs = app.topic(
        settings.topic_purchases,
        settings.topic_engagements,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        # Faust must not commit these offsets from its own acks: Runtime.tick commits
        # what the store says was applied (see _commit_positions).
        acks=False,
    )

    async def send(topic: str, key: bytes | None, value: bytes) -> Any:
        # Straight to the producer: enqueue now, await delivery of the whole outbox batch
        # later (Topic.send adds per-message bookkeeping this path does not need).
        return await app.producer.send(topic, key, value, None, None, None)

    async def flush() -> None:
        await app.producer.flush()

    def clock_factory() -> Clock:
        return settings.make_clock()

    input_names = (settings.topic_purchases, settings.topic_engagements)

    def owns(shard: int) -> bool:
        assignment = app.consumer.assignment()
        return any(TP(topic, shard) in assignment for topic in input_names)

    committed: dict[TP, int] = {}

    async def commit_positions(shard: int, offsets: dict[str, int]) -> None:
        if app.rebalancing:
            return  # the group is changing hands; the next tick commits
        assignment = app.consumer.assignment()
        positions = {
            tp: offset
            for topic, offset in offsets.items()
            if (tp := TP(topic, shard)) in assignment and committed.get(tp) != offset
        }
        if not positions:
            return  # nothing new (an empty commit is an error in aiokafka)
        if await commit_in_consumer_thread(app, positions):
            committed.update(positions)

    metrics = Metrics()
    runtime = Runtime(
        settings, store, scorer, clock_factory, send, flush, owns, commit_positions, metrics
    )
    if settings.api_port is not None:
        # The HTTP API and dashboard inside the worker process (a Faust service).
        from tierstream.api import create_api
        from tierstream.serve import attach_api

        api = create_api(store, scorer, settings, metrics)
        attach_api(app, api, settings.api_host, settings.api_port)
    app.tierstream_runtime = runtime  # type: ignore[attr-defined]

    @app.agent(inputs, name="tierstream-inputs")
    async def consume(stream: faust.StreamT[bytes]) -> None:
        batches = stream.take_events(  # type: ignore[attr-defined]  # missing from faust's stubs
            settings.batch_max, within=settings.batch_within
        )
        async for events in batches:
            await runtime.handle(events)

    @app.timer(interval=settings.timer_interval)  # type: ignore[untyped-decorator]
    async def rescore_due() -> None:
        await runtime.tick()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        await runtime.assign(tp.partition for tp in assigned if tp.topic in input_names)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        lost = {tp.partition for tp in revoked if tp.topic in input_names}
        await runtime.assign(set(runtime.processors) - lost)

    return app


__all__ = ["EventClock", "Runtime", "build_app"]
