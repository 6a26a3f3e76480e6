"""The Faust wiring: input agent, rescore timer, outbox publisher, partition ownership.

All state logic lives in ``ShardLogic``; this module moves bytes between Kafka and the
runtime that owns the shards and runs their steps (``Runtime``, streams/runtime.py).
The hot path stays on the event loop: Redis is awaited (redis.asyncio), never called from
threads, and publication does not wait for Kafka's acknowledgements (streams/publisher.py).
A per-shard asyncio lock keeps one step at a time per shard, so the agent and the timer
never interleave on a shard.

The invariant: a partition's applied offset only ever advances over messages whose effects
are committed. A step that fails is redone or the shard stops; it is never skipped
(streams/failures.py says which, per error).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import faust
from aiokafka.structs import OffsetAndMetadata
from aiokafka.structs import TopicPartition as AIOKafkaTP
from faust.types import TP

from scoring.engine import Scorer
from streams import intake
from streams.batchsend import BatchSender
from streams.deadletters import RawMessage
from streams.metrics import Metrics
from streams.runtime import Runtime
from tierstream.clock import Clock, EventClock
from tierstream.published import THRESHOLDS_META
from tierstream.settings import Settings
from tierstream.stores.base import StateStore
from tierstream.stores.redis_async import AsyncRedisStore

log = logging.getLogger("tierstream.worker")

# How long the producer lets a batch of tier changes fill before sending it.
PRODUCER_LINGER_SECONDS = 0.005

# Exit status of a worker that stopped a shard on an error it cannot judge safe to skip,
# and how long it keeps serving /healthz (which says why) before it exits.
FATAL_EXIT_STATUS = 70
FATAL_GRACE_SECONDS = 2.0
FATAL_STOP_SECONDS = 15.0  # a graceful stop (leaving the group) that takes longer is cut


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


def raw_topic(app: faust.App, *names: str, partitions: int, **options: Any) -> Any:
    """Topics read as raw bytes, whose offsets Faust must not commit from its own acks:
    Runtime.tick commits what the store says was applied (see _commit_positions)."""
    return app.topic(
        *names,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        acks=False,
        **options,
    )


def build_app(
    settings: Settings,
    store: StateStore,
    scorer: Scorer,
    hot_store: AsyncRedisStore,
    config_version: int = 0,
    worker_metrics: Metrics | None = None,
) -> faust.App:
    """The Faust app of ``tierstream worker``: ``hot_store`` carries the hot path, ``store``
    (the same Redis, blocking) the rare whole-shard reads. tierstream/bootstrap.py builds
    it, with the metrics it shares with the API it serves beside it."""
    datadir = settings.data_dir / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=settings.faust_broker(),
        broker_credentials=settings.faust_credentials(),
        # Faust keeps a data directory even with the memory store: not in the work tree.
        datadir=str(datadir),
        store="memory://",
        web_enabled=settings.web_port is not None,
        web_port=settings.web_port or 6066,
        web_bind="127.0.0.1",
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=True,  # Faust's own assignor topic; ours are pre-created
        topic_replication_factor=settings.replication_factor,  # Faust's own topics
        topic_partitions=settings.partitions,
        broker_commit_interval=1.0,
        # A worker killed with SIGKILL leaves no goodbye: its partitions wait this long
        # for it (Faust's default is 60 s) before a restarted or surviving worker gets them.
        broker_session_timeout=settings.kafka_session_timeout,
        broker_heartbeat_interval=settings.kafka_session_timeout / 3,
        # One fetch is one batch of steps (streams/intake.py).
        broker_max_poll_records=settings.batch_max,
        stream_wait_empty=False,
        producer_acks=-1,
        # Outbox entries are sent without waiting (streams/publisher.py); a few ms of
        # linger packs a step's changes into one produce request instead of many small
        # socket writes.
        producer_linger=PRODUCER_LINGER_SECONDS,
        key_serializer="raw",
        value_serializer="raw",
    )
    inputs = raw_topic(
        app,
        settings.topic_purchases,
        settings.topic_engagements,
        settings.topic_erasures,
        settings.topic_profiles,
        partitions=settings.partitions,
    )

    # Straight to aiokafka's producer, in batches (Topic.send and Faust's Producer.send add
    # per-message bookkeeping this path does not need).
    send = BatchSender(app.producer._ensure_producer)  # type: ignore[attr-defined]

    def clock_factory() -> Clock:
        return settings.make_clock()

    input_names = (
        settings.topic_purchases,
        settings.topic_engagements,
        settings.topic_erasures,
        settings.topic_profiles,
    )

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
        started = time.perf_counter()
        if await commit_in_consumer_thread(app, positions):
            committed.update(positions)
            metrics.kafka_commit_seconds.observe(time.perf_counter() - started)
        else:
            metrics.kafka_commit_failures.inc()

    async def rewind(shard: int, offsets: dict[str, int]) -> None:
        assignment = app.consumer.assignment()
        for topic, offset in offsets.items():
            if (tp := TP(topic, shard)) in assignment:
                await app.consumer.seek(tp, offset)
                committed.pop(tp, None)

    metrics = worker_metrics if worker_metrics is not None else Metrics()

    def on_fatal(exc: BaseException) -> None:
        # A shard stopped on an error nobody can judge safe to skip. Leave the group (the
        # partitions go to healthy workers, which re-read them from Redis) and exit
        # non-zero for the supervisor; Redis holds every committed step, so even the hard
        # exit that follows a stop that hangs loses nothing.
        async def stop_and_exit() -> None:
            await asyncio.sleep(FATAL_GRACE_SECONDS)  # /healthz says why meanwhile
            try:
                await asyncio.wait_for(app.stop(), FATAL_STOP_SECONDS)
            finally:
                logging.shutdown()
                os._exit(FATAL_EXIT_STATUS)

        app.tierstream_exit = asyncio.ensure_future(stop_and_exit())  # type: ignore[attr-defined]

    runtime = Runtime(
        settings,
        hot_store,
        store,
        scorer,
        clock_factory,
        send,
        owns,
        commit_positions,
        metrics,
        on_fatal,
        rewind,
        config_version,
    )
    metrics.watch_shards(
        lambda: {shard: owned.publisher.in_flight for shard, owned in runtime.shards.items()}
    )
    app.tierstream_runtime = runtime  # type: ignore[attr-defined]
    # B2B accounts: their contribution updates come back through an internal topic to the
    # account step, on a namespace of its own (streams/accounts.py).
    from streams.accounts import account_runtime, split_contributions  # noqa: PLC0415

    contributions_name = settings.topic_account_contributions

    def owns_account_shard(shard: int) -> bool:
        return TP(contributions_name, shard) in app.consumer.assignment()

    accounts = account_runtime(
        settings, scorer.config, send, owns_account_shard, commit_positions, rewind, on_fatal
    )
    app.tierstream_accounts = accounts  # type: ignore[attr-defined]

    async def handle_fetched(by_shard: dict[int, list[RawMessage]]) -> None:
        inputs_batch, contributions_batch = split_contributions(by_shard, contributions_name)
        if inputs_batch:
            await runtime.handle_messages(inputs_batch)
        if contributions_batch:
            await accounts.handle_messages(contributions_batch)

    # Input batches go from the consumer's fetch straight to the runtime (streams/intake.py);
    # the agent below is the fallback path, and stays idle when the hook is installed.
    intake.install(app.consumer, (*input_names, contributions_name), handle_fetched)
    contributions = raw_topic(
        app,
        contributions_name,
        partitions=settings.partitions,
        # Declared by the worker when missing (`tierstream topics create` makes it too).
        internal=True,
    )

    @app.agent(contributions, name="tierstream-account-contributions")
    async def consume_contributions(stream: faust.StreamT[bytes]) -> None:
        batches = stream.take_events(  # type: ignore[attr-defined]
            settings.batch_max, within=settings.batch_within
        )
        async for events in batches:
            await accounts.handle(events)

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
        await accounts.tick()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        metrics.rebalances.inc()
        await runtime.assign(tp.partition for tp in assigned if tp.topic in input_names)
        await accounts.assign(tp.partition for tp in assigned if tp.topic == contributions_name)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        lost = {tp.partition for tp in revoked if tp.topic in input_names}
        await runtime.assign(set(runtime.shards) - lost)
        gone = {tp.partition for tp in revoked if tp.topic == contributions_name}
        await accounts.assign(set(accounts.shards) - gone)

    return app


__all__ = ["THRESHOLDS_META", "EventClock", "Runtime", "build_app"]
