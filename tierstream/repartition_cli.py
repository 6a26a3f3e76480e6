"""``tierstream repartition --to N``: checks, then the move (tierstream/repartition.py).

Runbook (docs/operations.md, "Changing the partition count"): pause the producers, let
the workers apply everything, stop the workers, add partitions to the input topics, run
this, start the workers with ``TIERSTREAM_PARTITIONS=N``, resume the producers.
"""

from __future__ import annotations

import json
import time

from kafka.errors import KafkaError
from redis.exceptions import RedisError

from tierstream.cli_input import fail, say
from tierstream.repartition import RepartitionError, plan, repartition
from tierstream.repartition_kafka import (
    check_no_workers,
    check_partitions,
    old_layout_messages,
    outbox_delivery,
)
from tierstream.settings import Settings
from tierstream.stores.redis import RedisStore
from tierstream.topics import INPUT_TOPIC_SETTINGS, kafka_security_from_env


def run(settings: Settings, target: int) -> None:
    try:
        _run(settings, target)
    except RepartitionError as exc:
        fail(f"repartition refused: {exc}")
    except (RedisError, KafkaError, OSError) as exc:
        fail(f"repartition stopped ({type(exc).__name__}: {exc}); run it again to resume")


def _run(settings: Settings, target: int) -> None:
    store = RedisStore(
        settings.redis_url,
        partitions=max(settings.partitions, target),
        namespace=settings.redis_namespace,
        history_length=settings.history_length,
    )
    try:
        source, resumed = plan(store, settings.partitions, target)
        if source == target and not resumed:
            say(f"the store is laid out for {target} partitions already: nothing to do", "green")
            return
        if store.partitions < max(source, target):
            store.close()
            store = RedisStore(
                settings.redis_url,
                partitions=max(source, target),
                namespace=settings.redis_namespace,
                history_length=settings.history_length,
            )
        security = kafka_security_from_env()
        bootstrap = settings.kafka_bootstrap
        # Erasure requests and profile updates are keyed and sharded like events: their
        # topics move with them.
        inputs = [getattr(settings, setting.lower()) for setting in INPUT_TOPIC_SETTINGS]
        check_no_workers(bootstrap, settings.app_id, security)
        check_partitions(bootstrap, inputs, target, security)
        stale = old_layout_messages(bootstrap, store, inputs, source, target, security)
        if stale:
            raise RepartitionError(
                f"{stale:,} message(s) produced for {source} partitions are not applied yet "
                f"and belong to other shards under {target}: start the workers with "
                f"{source} partitions, let them apply everything, and add the partitions "
                "only after (pause the producers meanwhile)"
            )
        deliver, producer = outbox_delivery(
            bootstrap,
            settings.topic_tier_changes,
            settings.topic_dead_letters,
            security,
            settings.topic_account_contributions,
        )
        started = time.monotonic()
        try:
            report = repartition(
                store,
                source,
                target,
                deliver,
                resumed=resumed,
                progress=lambda line: say(line, "cyan"),
            )
        finally:
            producer.close()
        summary = {
            "from": report.source,
            "to": report.target,
            "customers": report.customers,
            "moved": report.moved,
            "outbox_delivered": report.delivered,
            "resumed": report.resumed,
            "seconds": round(time.monotonic() - started, 1),
        }
        print(json.dumps(summary))
        say(f"verified; start the workers with TIERSTREAM_PARTITIONS={target}", "green")
    finally:
        store.close()
