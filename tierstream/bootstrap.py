"""How each process is assembled from ``Settings``: the worker, ``serve`` and ``deliver``.

The command line (tierstream/cli.py, tierstream/deliver_cli.py) checks its options and
hands the settings over; everything a process is made of is built here, in one place:

* ``worker_app``: the Redis store, the start-up checks (partition layout, input topics),
  the published config and behaviour model to start with, the scorer, the Faust app of
  streams/worker.py with its metrics, and the HTTP API inside it when ``api_port`` is set.
* ``serve_app``: the standalone API over Redis, with a reader's short retry budget.
* ``deliver``: the producer, one consumer and loop per subscription, and the metrics
  server of ``tierstream deliver``, following the published config
  (streams/deliver_follow.py) until SIGTERM or SIGINT.

Every process and command opens Redis with ``tierstream.stores.from_settings.redis_store``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from scoring.engine import Scorer
from tierstream.cli_input import console, fail
from tierstream.settings import Settings
from tierstream.stores.from_settings import redis_store

if TYPE_CHECKING:
    import faust
    from aiohttp import web

    from scoring.config import ScoringConfig
    from tierstream.published import MetaReader
    from tierstream.stores.redis import RedisStore

deliver_log = logging.getLogger("tierstream.deliver")

# A webhook's retries may hold a batch for minutes; the consumer must not be dropped from
# its group meanwhile (heartbeats run on their own, only the poll interval matters).
MAX_POLL_INTERVAL_MS = 3_600_000


# ------------------------------------------------------------------ the worker


def worker_app(settings: Settings) -> faust.App:
    """The worker process of ``tierstream worker``: checked, scored with what is published,
    with the HTTP API inside when ``settings.api_port`` is set."""
    from redis.exceptions import RedisError  # noqa: PLC0415

    from streams.metrics import Metrics  # noqa: PLC0415
    from streams.worker import build_app  # noqa: PLC0415
    from tierstream.config_store import worker_config  # noqa: PLC0415
    from tierstream.published import SNAPSHOT_META, Watched, behaviour_snapshot  # noqa: PLC0415
    from tierstream.stores.redis_async import AsyncRedisStore  # noqa: PLC0415

    store = redis_store(settings)
    check_layout(store, settings.partitions)
    check_topics(settings)
    try:
        snapshot = Watched(store, SNAPSHOT_META, behaviour_snapshot).read()
    except (OSError, RedisError) as exc:  # the worker's timer adopts the model later
        console.print(f"[yellow]behaviour model not loaded yet ({exc}); will retry[/yellow]")
        snapshot = None
    config, config_version = worker_config(settings, store)
    behaviour = None
    if snapshot is not None:
        from tierstream.behaviours import SnapshotBehaviour  # noqa: PLC0415 - numpy/models

        behaviour = SnapshotBehaviour(snapshot)
    scorer = Scorer(config, behaviour=behaviour)
    metrics = Metrics()
    app = build_app(
        settings, store, scorer, AsyncRedisStore(store), config_version, worker_metrics=metrics
    )
    if settings.api_port is not None:
        # The HTTP API and dashboard inside the worker process (a Faust service).
        from tierstream.api import create_api  # noqa: PLC0415

        api = create_api(store, scorer, settings, metrics)
        attach_api(app, api, settings.api_host, settings.api_port)
    return app


def run_worker(settings: Settings, loglevel: str) -> None:
    """Run one worker process until it is stopped."""
    import faust  # noqa: PLC0415 - heavy; only the worker needs it

    worker = faust.Worker(worker_app(settings), loglevel=loglevel.upper(), quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG whenever the level is WARNING
    # or above, so every debug call of aiokafka (one per message sent) built a log record
    # only for a handler to drop it: about 6% of the worker's time. No spinner, no records.
    worker.spinner = None
    worker.execute_from_commandline()


def check_layout(store: RedisStore, partitions: int) -> None:
    """Refuse to start a worker on a store laid out for another partition count, or in
    the middle of a repartition (tierstream/repartition.py)."""
    from redis.exceptions import RedisError  # noqa: PLC0415

    from tierstream.audiences import mark_if_fresh  # noqa: PLC0415
    from tierstream.repartition import layout_problem  # noqa: PLC0415

    try:
        problem = layout_problem(store, partitions) or _accounts_layout_problem(store, partitions)
        if problem is None:
            mark_if_fresh(store)  # an empty store keeps its audience sizes from the start
    except RedisError as exc:  # Redis not up yet: the worker waits for it as for anything
        console.print(f"[yellow]partition layout not checked ({exc})[/yellow]")
        return
    if problem is not None:
        fail(f"worker not started: {problem}")


def _accounts_layout_problem(store: RedisStore, partitions: int) -> str | None:
    """The account shards' layout (``<namespace>.accounts``, moved by repartition too)."""
    from tierstream.accounts import ACCOUNTS_NAMESPACE_SUFFIX  # noqa: PLC0415
    from tierstream.repartition import layout_problem  # noqa: PLC0415
    from tierstream.stores.redis import RedisStore  # noqa: PLC0415

    accounts = RedisStore(store.url, partitions, store.namespace + ACCOUNTS_NAMESPACE_SUFFIX)
    try:
        return layout_problem(accounts, partitions)
    finally:
        accounts.close()


def check_topics(settings: Settings) -> None:
    """Refuse to start a worker whose input topics are missing or partitioned unlike the
    shards; a cluster that cannot be asked yet is waited for by the worker itself."""
    from kafka.errors import KafkaError  # noqa: PLC0415 - kafka-python's import is slow

    from tierstream.topics import worker_topic_problem  # noqa: PLC0415

    try:
        problem = worker_topic_problem(settings)
    except KafkaError as exc:
        console.print(f"[yellow]topics not checked ({type(exc).__name__}: {exc})[/yellow]")
        return
    if problem is not None:
        fail(f"worker not started: {problem}")


def attach_api(
    faust_app: faust.App, web_app: web.Application, host: str, port: int
) -> Callable[[], Awaitable[None]]:
    """Serve ``web_app`` from a Faust worker: started and stopped with the Faust app.

    A Faust service rather than Faust's own web server: that one owns "/" and its own
    routes, and starts with the web views Faust registers. Returns an ``async stop()``
    (idempotent) for callers that run the app without a Faust worker.
    """
    import mode  # noqa: PLC0415 - Faust's service framework; only the worker has it loaded

    from tierstream.api import start_api  # noqa: PLC0415

    stops: list[Callable[[], Awaitable[None]]] = []

    async def stop() -> None:
        while stops:
            await stops.pop()()

    class ApiService(mode.Service):
        async def on_start(self) -> None:
            stops.append(await start_api(web_app, host, port))

        async def on_stop(self) -> None:
            await stop()

    faust_app.service(ApiService)
    return stop


# ------------------------------------------------------------------- the API


def serve_app(settings: Settings) -> web.Application:
    """The standalone API application over Redis (the store closes with the app)."""
    from tierstream.api import create_api  # noqa: PLC0415 - aiohttp only when serving

    store = redis_store(settings, reader=True)
    app = create_api(store, Scorer(settings.scoring_config()), settings)

    async def close_store(app: web.Application) -> None:
        store.close()

    app.on_cleanup.append(close_store)
    return app


# ------------------------------------------------------------------ delivery


def group_id(settings: Settings, subscription: str) -> str:
    return f"{settings.app_id}-deliver-{subscription}"


async def deliver(
    settings: Settings,
    config: ScoringConfig,
    secrets: dict[str, bytes],
    start: str,
    metrics_port: int = 0,
    version: int = 0,
    store: MetaReader | None = None,
) -> None:
    """``tierstream deliver``: every subscription of ``config`` (published ``version``, 0:
    the local file), then of each version published in ``store``, until SIGTERM or SIGINT."""
    from aiohttp import ClientSession  # noqa: PLC0415
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: PLC0415

    from streams.deliver_follow import (  # noqa: PLC0415
        PublishedSubscriptions,
        RunningSubscriptions,
        deliver_until_stopped,
        say_idle,
    )

    options = settings.client_options()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True, **options
    )
    try:
        await producer.start()
    except BaseException:
        await producer.stop()  # release its connections before the one-line error
        raise

    def consumer(subscription: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            settings.topic_tier_changes,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=group_id(settings, subscription),
            enable_auto_commit=False,
            auto_offset_reset=start,
            # As the worker's group: a killed deliver's partitions wait this long.
            session_timeout_ms=int(settings.kafka_session_timeout * 1000),
            heartbeat_interval_ms=int(settings.kafka_session_timeout * 1000 / 5),
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
            **options,
        )

    session = ClientSession()
    running = RunningSubscriptions(consumer, producer, session, settings)
    stop_metrics: Callable[[], Awaitable[None]] | None = None
    try:
        for subscription in config.subscriptions:
            await running.start(subscription, secrets.get(subscription.name))
        if metrics_port:
            stop_metrics = await serve_delivery_metrics(running.loops, metrics_port)
        if config.subscriptions:
            names = ", ".join(s.name for s in config.subscriptions)
            deliver_log.info("delivering %d subscription(s): %s", len(running.loops), names)
        else:
            say_idle(f"config version {version}" if version else "the local config")
        follower = None
        if store is not None:
            follower = PublishedSubscriptions(
                store, settings, version, config.subscriptions, running
            )
        await deliver_until_stopped(running, follower, stopping)
    finally:
        if stop_metrics is not None:
            await stop_metrics()
        await running.stop_all()
        await session.close()
        await producer.stop()


async def serve_delivery_metrics(loops: list[Any], port: int) -> Callable[[], Awaitable[None]]:
    """GET /metrics (Prometheus text) on 0.0.0.0:port; returns the stop function."""
    from aiohttp import web  # noqa: PLC0415
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest  # noqa: PLC0415

    from streams.deliver_metrics import delivery_registry  # noqa: PLC0415

    registry = delivery_registry(loops)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "0.0.0.0", port).start()  # noqa: S104 - scraped from outside
    except OSError as exc:
        await runner.cleanup()
        from streams.deliver import DeliverySetupError  # noqa: PLC0415

        raise DeliverySetupError(f"cannot serve metrics on port {port}: {exc}") from exc
    deliver_log.info("metrics on http://0.0.0.0:%d/metrics", port)
    return runner.cleanup
