"""``tierstream deliver``: runs the subscriptions of the scoring config in force
(streams/deliver.py, assembled by tierstream/bootstrap.py), following each version
``tierstream config apply`` publishes (streams/deliver_follow.py).

Start-up checks, each a one-line error and exit 2: the config in force or the local file
has subscriptions, every webhook's secret variable is set, and the tier-changes,
dead-letters and derived topics exist (``tierstream topics create`` makes the derived
ones). Redis unreachable at start is one warning: the local file, and retries.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Annotated

import typer

from tierstream.cli_input import fail, load_settings, settings_config

if TYPE_CHECKING:
    from scoring.config import ScoringConfig
    from tierstream.settings import Settings
    from tierstream.stores.redis import RedisStore


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
    delivery (at least once). Configured by the `subscriptions` of the published scoring
    config (else the local file), followed as new versions are applied, and the
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
    config, version, store = config_to_deliver(settings)
    from aiokafka.errors import KafkaConnectionError  # noqa: PLC0415

    from tierstream.bootstrap import deliver  # noqa: PLC0415

    try:
        secrets = webhook_secrets(config.subscriptions, os.environ)
        asyncio.run(deliver(settings, config, secrets, start, metrics_port, version, store))
    except DeliverySetupError as exc:
        fail(str(exc))
    except KafkaConnectionError as exc:
        fail(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}")
    finally:
        store.close()


def config_to_deliver(settings: Settings) -> tuple[ScoringConfig, int, RedisStore]:
    """The config in force (the published version, else the local file, as for workers),
    its version (0: the local file) and the store to follow later versions in.

    Nothing to deliver in either is an error; a published version without subscriptions
    while the local file has some is not: deliver waits, idle, for the next version.
    """
    from tierstream.config_store import meta_store, worker_config  # noqa: PLC0415

    local = settings_config(settings)  # a bad local file is an error before Redis is asked
    store = meta_store(settings)
    config, version = worker_config(settings, store)
    if not config.subscriptions and not local.subscriptions:
        store.close()
        fail("the scoring config has no subscriptions: nothing to deliver")
    return config, version, store
