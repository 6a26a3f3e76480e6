"""``tierstream repartition --to N``: checks, then the move (tierstream/repartition.py).

Runbook (docs/operations.md, "Changing the partition count"): pause the producers, let
the workers apply everything, stop the workers, add partitions to the input topics and
the accounts' contributions topic, run this, start the workers with
``TIERSTREAM_PARTITIONS=N``, resume the producers.

Two namespaces move, each with ``repartition``'s own marker and verification: the account
shards (``<namespace>.accounts``, account shard p = partition p of the contributions topic,
keyed by account id), then the customers. Both markers are written before either moves,
and the worker checks both (``tierstream worker``, ``layout_problem``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from kafka.errors import KafkaError
from redis.exceptions import RedisError

from tierstream.accounts import accounts_namespace
from tierstream.cli_input import fail, say
from tierstream.repartition import RepartitionError, Report, begin, plan, repartition
from tierstream.repartition_kafka import (
    check_no_workers,
    check_partitions,
    existing_topics,
    old_layout_messages,
    outbox_delivery,
)
from tierstream.settings import Settings
from tierstream.stores.redis import RedisStore
from tierstream.topics import INPUT_TOPIC_SETTINGS


def run(settings: Settings, target: int) -> None:
    try:
        _run(settings, target)
    except RepartitionError as exc:
        fail(f"repartition refused: {exc}")
    except (RedisError, KafkaError, OSError) as exc:
        fail(f"repartition stopped ({type(exc).__name__}: {exc}); run it again to resume")


def _run(settings: Settings, target: int) -> None:
    # A plan never goes to fewer shards than configured: this many cover both layouts.
    covered = max(settings.partitions, target)
    stores = {
        "accounts": _store(settings, accounts_namespace(settings), covered),
        "customers": _store(settings, settings.redis_namespace, covered),
    }
    try:
        plans = {name: plan(store, settings.partitions, target) for name, store in stores.items()}
        if all(source == target and not resumed for source, resumed in plans.values()):
            say(f"the store is laid out for {target} partitions already: nothing to do", "green")
            return
        _check_kafka(settings, stores, plans, target)
        # Both namespaces are marked as moving before either moves: whichever step an
        # interruption stops in, a worker is refused (layout_problem) until both are
        # verified, and the next run resumes both.
        for name, store in stores.items():
            source, resumed = plans[name]
            if source != target and not resumed:
                begin(store, source, target, _progress(name))
        deliver, producer = outbox_delivery(
            settings.kafka_bootstrap,
            settings.topic_tier_changes,
            settings.topic_dead_letters,
            settings.client_options(),
            settings.topic_account_contributions,
        )
        started = time.monotonic()
        reports: dict[str, Report] = {}
        try:
            for name, store in stores.items():
                source, resumed = plans[name]
                if source == target and not resumed:
                    continue  # moved by an earlier, interrupted run
                say(f"{name}: from {source} to {target} partitions", "cyan")
                reports[name] = repartition(
                    store, source, target, deliver, resumed=True, progress=_progress(name)
                )
        finally:
            producer.close()
        print(json.dumps(_summary(plans, reports, target, time.monotonic() - started)))
        say(f"verified; start the workers with TIERSTREAM_PARTITIONS={target}", "green")
    finally:
        for store in stores.values():
            store.close()


def _check_kafka(
    settings: Settings,
    stores: dict[str, RedisStore],
    plans: dict[str, tuple[int, bool]],
    target: int,
) -> None:
    """The refusals that need Kafka (tierstream/repartition_kafka.py), for both layouts."""
    security = settings.client_options()
    bootstrap = settings.kafka_bootstrap
    # Erasure requests and profile updates are keyed and sharded like events: their
    # topics move with them. Account shard p consumes partition p of the contributions
    # topic (keyed by account): it moves with the account shards, when it exists (a
    # worker creates it with the partition count it starts with).
    inputs = [getattr(settings, setting.lower()) for setting in INPUT_TOPIC_SETTINGS]
    contributions = existing_topics(bootstrap, [settings.topic_account_contributions], security)
    check_no_workers(bootstrap, settings.app_id, security)
    check_partitions(bootstrap, inputs + contributions, target, security)
    source = plans["customers"][0]
    stale = old_layout_messages(bootstrap, stores["customers"], inputs, source, target, security)
    stale += old_layout_messages(
        bootstrap, stores["accounts"], contributions, plans["accounts"][0], target, security
    )
    if stale:
        raise RepartitionError(
            f"{stale:,} message(s) produced for {source} partitions are not applied yet "
            f"and belong to other shards under {target}: start the workers with "
            f"{source} partitions, let them apply everything (account contributions "
            "included), and add the partitions only after (pause the producers meanwhile)"
        )


def _progress(name: str) -> Callable[[str], None]:
    return lambda line: say(f"{name}: {line}", "cyan")


def _store(settings: Settings, namespace: str, partitions: int) -> RedisStore:
    return RedisStore(
        settings.redis_url,
        partitions=partitions,
        namespace=namespace,
        history_length=settings.history_length,
    )


def _summary(
    plans: dict[str, tuple[int, bool]], reports: dict[str, Report], target: int, seconds: float
) -> dict[str, object]:
    customers = reports.get("customers")
    accounts = reports.get("accounts")
    return {
        "from": plans["customers"][0],
        "to": target,
        "customers": customers.customers if customers else None,
        "moved": customers.moved if customers else 0,
        "accounts": accounts.customers if accounts else None,
        "accounts_moved": accounts.moved if accounts else 0,
        "outbox_delivered": sum(report.delivered for report in reports.values()),
        "resumed": any(resumed for _, resumed in plans.values()),
        "seconds": round(seconds, 1),
    }
