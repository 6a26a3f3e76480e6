"""``tierstream deliver``: runs the subscriptions of the scoring config (streams/deliver.py).

Start-up checks, each a one-line error and exit 2: the config has subscriptions, every
webhook's secret variable is set, and the tier-changes, dead-letters and derived topics
exist (``tierstream topics create`` makes the derived ones).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tierstream.cli_input import fail, load_settings, settings_config

if TYPE_CHECKING:
    from scoring.config import ScoringConfig
    from tierstream.settings import Settings

log = logging.getLogger("tierstream.deliver")

# A webhook's retries may hold a batch for minutes; the consumer must not be dropped from
# its group meanwhile (heartbeats run on their own, only the poll interval matters).
MAX_POLL_INTERVAL_MS = 3_600_000


def group_id(settings: Settings, subscription: str) -> str:
    return f"{settings.app_id}-deliver-{subscription}"


def register(app: typer.Typer) -> None:
    app.command("deliver")(deliver_command)


def deliver_command(
    loglevel: Annotated[str, typer.Option(help="debug | info | warning")] = "info",
    start: Annotated[
        str,
        typer.Option(
            help="Where a subscription seen for the first time starts on tier-changes: "
            "earliest (every retained change) or latest (changes from now on)"
        ),
    ] = "earliest",
    metrics_port: Annotated[
        int,
        typer.Option(
            envvar="TIERSTREAM_DELIVER_METRICS_PORT",
            help="Serve Prometheus metrics on this port at /metrics (0: off)",
        ),
    ] = 0,
) -> None:
    """Deliver the subscriptions' tier changes to derived topics and webhooks.

    One consumer group per subscription on tier-changes; offsets are committed only after
    delivery (at least once). Configured by the scoring config's `subscriptions` and the
    TIERSTREAM_ settings.
    """
    from streams.deliver import DeliverySetupError, webhook_secrets  # noqa: PLC0415 - aiohttp

    if start not in ("earliest", "latest"):
        fail(f"--start must be earliest or latest, got {start!r}")
    if not 0 <= metrics_port <= 65535:
        fail(f"--metrics-port must be between 0 and 65535, got {metrics_port}")
    logging.basicConfig(
        level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings()
    config = settings_config(settings)
    if not config.subscriptions:
        fail("the scoring config has no subscriptions: nothing to deliver")
    try:
        secrets = webhook_secrets(config.subscriptions, os.environ)
    except DeliverySetupError as exc:
        fail(str(exc))
    from aiokafka.errors import KafkaConnectionError  # noqa: PLC0415

    try:
        asyncio.run(deliver(settings, config, secrets, start, metrics_port))
    except DeliverySetupError as exc:
        fail(str(exc))
    except KafkaConnectionError as exc:
        fail(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}")


async def deliver(
    settings: Settings,
    config: ScoringConfig,
    secrets: dict[str, bytes],
    start: str,
    metrics_port: int = 0,
) -> None:
    from aiohttp import ClientSession  # noqa: PLC0415
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: PLC0415

    from streams.deliver import Endpoint, SubscriptionLoop, report_counts  # noqa: PLC0415

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
    session = ClientSession()
    consumers: list[Any] = []
    stop_metrics: Callable[[], Awaitable[None]] | None = None
    try:
        loops: list[SubscriptionLoop] = []
        for subscription in config.subscriptions:
            consumer = AIOKafkaConsumer(
                settings.topic_tier_changes,
                bootstrap_servers=settings.kafka_bootstrap,
                group_id=group_id(settings, subscription.name),
                enable_auto_commit=False,
                auto_offset_reset=start,
                session_timeout_ms=10_000,
                heartbeat_interval_ms=2_000,
                max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
                **options,
            )
            consumers.append(consumer)
            await consumer.start()
            if not loops:
                await _check_topics(consumer, settings, config)
            hook = subscription.webhook
            endpoint = (
                Endpoint(subscription.name, hook, secrets[subscription.name], session)
                if hook is not None
                else None
            )
            loops.append(
                SubscriptionLoop(
                    subscription, consumer, producer, endpoint, settings.topic_dead_letters
                )
            )
        if metrics_port:
            stop_metrics = await serve_metrics(loops, metrics_port)
        names = ", ".join(s.name for s in config.subscriptions)
        log.info("delivering %d subscription(s): %s", len(loops), names)
        tasks = [asyncio.create_task(each.run(stopping)) for each in loops]
        tasks.append(asyncio.create_task(report_counts(loops, 10.0, stopping)))
        stop = asyncio.create_task(stopping.wait())
        done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
        stopping.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result
    finally:
        if stop_metrics is not None:
            await stop_metrics()
        for consumer in consumers:
            await consumer.stop()
        await session.close()
        await producer.stop()


async def serve_metrics(loops: list[Any], port: int) -> Callable[[], Awaitable[None]]:
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
    log.info("metrics on http://0.0.0.0:%d/metrics", port)
    return runner.cleanup


async def _check_topics(consumer: Any, settings: Settings, config: ScoringConfig) -> None:
    from streams.deliver import DeliverySetupError  # noqa: PLC0415

    existing = await consumer.topics()
    needed = [settings.topic_tier_changes, settings.topic_dead_letters]
    needed += [s.topic for s in config.subscriptions if s.topic is not None]
    missing = [topic for topic in needed if topic not in existing]
    if missing:
        raise DeliverySetupError(
            f"topic(s) {', '.join(missing)} do not exist: run `tierstream topics create`"
        )
