"""``tierstream deliver``: runs the subscriptions of the scoring config (streams/deliver.py,
assembled by tierstream/bootstrap.py).

Start-up checks, each a one-line error and exit 2: the config has subscriptions, every
webhook's secret variable is set, and the tier-changes, dead-letters and derived topics
exist (``tierstream topics create`` makes the derived ones).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Annotated

import typer

from tierstream.cli_input import fail, load_settings, settings_config


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

    from tierstream.bootstrap import deliver  # noqa: PLC0415

    try:
        asyncio.run(deliver(settings, config, secrets, start, metrics_port))
    except DeliverySetupError as exc:
        fail(str(exc))
    except KafkaConnectionError as exc:
        fail(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}")
