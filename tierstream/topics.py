"""Create the Kafka topics tierstream needs, with explicit partition counts.

Brokers used by tierstream run with ``auto.create.topics.enable=false``: a topic
created implicitly by the first producer would get the broker's default partition
count, and the partition count is what divides the work between workers. So the
topics are created up front, by ``make services-up`` (``python -m tierstream.topics``),
by the docker-compose ``topic-init`` service, or by an operator against an existing
cluster.

``ensure_topics`` is idempotent: topics that already exist are left as they are
(their partition count is reported when it differs from the requested one, never
changed: repartitioning moves keys between partitions and is an operator decision).

Settings: the ``KafkaSettings`` every client uses (tierstream/kafka_settings.py), so the
bootstrap servers, SASL and TLS are the worker's; plus ``TIERSTREAM_TOPIC_*``,
``PARTITIONS`` (input and tier-change topics, default 4), ``DEAD_LETTER_PARTITIONS``
(default 1) and ``REPLICATION_FACTOR`` (default 1). ``tierstream topics create`` is the
same as ``python -m tierstream.topics``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

import kafka.errors
from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError
from pydantic import ValidationError

from tierstream.settings import Settings

log = logging.getLogger(__name__)

# Setting name (after TIERSTREAM_) -> default topic name, as in the product spec.
TOPIC_SETTINGS: dict[str, str] = {
    "TOPIC_PURCHASES": "purchases",
    "TOPIC_ENGAGEMENTS": "engagements",
    "TOPIC_TIER_CHANGES": "tier-changes",
    "TOPIC_DEAD_LETTERS": "dead-letters",
    "TOPIC_ERASURES": "erasures",
    "TOPIC_PROFILES": "customer-profiles",
}
# Topics created compacted: the customer-profiles topic keeps each customer's latest
# traits (a tombstone deletes them), however old.
COMPACTED_SETTINGS = ("TOPIC_PROFILES",)
COMPACTED = {"cleanup.policy": "compact"}

_ERROR_TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno
# What a client raises while no broker answers yet: kafka-python 3 raises
# KafkaTimeoutError("Unable to bootstrap ..."), 2.x NoBrokersAvailable.
_NOT_REACHABLE: tuple[type[Exception], ...] = tuple(
    error
    for error in (
        getattr(kafka.errors, "NoBrokersAvailable", None),
        kafka.errors.KafkaTimeoutError,
        kafka.errors.KafkaConnectionError,
    )
    if error is not None
)


def topics_from_settings(settings: Settings) -> dict[str, int]:
    """Topic name -> partition count of every topic in ``TOPIC_SETTINGS``: the dead-letter
    topic has ``DEAD_LETTER_PARTITIONS``, every other ``PARTITIONS``."""
    topics: dict[str, int] = {}
    for setting in TOPIC_SETTINGS:
        name = getattr(settings, setting.lower())
        if setting == "TOPIC_DEAD_LETTERS":
            count = settings.dead_letter_partitions
        else:
            count = settings.partitions
        if name in topics and topics[name] != count:
            raise ValueError(f"topic {name!r} is configured twice with different partition counts")
        topics[name] = count
    # Accounts' internal topic (streams/accounts.py): keyed by account, partitioned likewise.
    topics[settings.topic_account_contributions] = settings.partitions
    # Subscriptions' derived topics (tierstream deliver): partitioned like tier-changes.
    for subscription in settings.scoring_config().subscriptions:
        if subscription.topic is not None:
            name = subscription.topic
            if name in topics and topics[name] != settings.partitions:
                raise ValueError(f"derived topic {name!r} is also a topic of another kind")
            topics[name] = settings.partitions
    return topics


def topic_configs_from_settings(settings: Settings) -> dict[str, dict[str, str]]:
    """Topic name -> the topic configs it is created with (the compacted ones)."""
    return {getattr(settings, setting.lower()): COMPACTED for setting in COMPACTED_SETTINGS}


def topics_from_env() -> dict[str, int]:
    """``topics_from_settings`` of the ``TIERSTREAM_`` environment."""
    return topics_from_settings(Settings())


def _admin(bootstrap: str, timeout_s: float, **options: Any) -> KafkaAdminClient:
    """Connect an admin client, retrying while the broker is still starting."""
    deadline = time.monotonic() + timeout_s
    while True:
        bounded: dict[str, Any] = {}
        if int(kafka.__version__.split(".")[0]) >= 3:
            # One attempt would otherwise block for kafka-python's own 30 s bootstrap
            # timeout (a refused SASL login, say), whatever the caller's timeout.
            left = max(0.5, deadline - time.monotonic())
            bounded["bootstrap_timeout_ms"] = int(left * 1000)
        try:
            return KafkaAdminClient(
                bootstrap_servers=bootstrap,
                client_id="tierstream-topics",
                request_timeout_ms=15_000,
                **bounded,
                **options,
            )
        except _NOT_REACHABLE:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def _partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for topic in admin.describe_topics(names):
        if topic.get("error_code", 0) == 0:
            counts[topic["topic"] if "topic" in topic else topic["name"]] = len(
                topic.get("partitions") or []
            )
    return counts


def _create(
    admin: KafkaAdminClient,
    topics: Mapping[str, int],
    replication_factor: int,
    configs: Mapping[str, dict[str, str]],
) -> None:
    """CreateTopics for ``topics``; an already existing topic is not an error."""
    if int(kafka.__version__.split(".")[0]) >= 3:
        spec: Any = {
            name: {
                "num_partitions": count,
                "replication_factor": replication_factor,
                **({"configs": dict(configs[name])} if name in configs else {}),
            }
            for name, count in topics.items()
        }
        response = admin.create_topics(spec, timeout_ms=30_000, raise_errors=False)
        failures = []
        for result in response["topics"]:
            code = result.get("error_code", 0)
            if code not in (0, _ERROR_TOPIC_ALREADY_EXISTS):
                failures.append(f"{result.get('name')}: {result.get('error_message') or code}")
        if failures:
            raise KafkaError("could not create topics: " + "; ".join(failures))
        admin.wait_for_topics(list(topics), timeout_ms=30_000)
    else:  # kafka-python 2.x
        from kafka.admin import NewTopic

        for name, count in topics.items():
            try:
                topic = NewTopic(name, count, replication_factor, topic_configs=configs.get(name))
                admin.create_topics([topic], timeout_ms=30_000)
            except TopicAlreadyExistsError:
                pass


def ensure_topics(
    bootstrap: str,
    topics: dict[str, int],
    *,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
    configs: Mapping[str, dict[str, str]] | None = None,
    **client_options: Any,
) -> None:
    """Make sure every topic in ``topics`` (name -> partition count) exists.

    Missing topics are created with the given partition count and replication
    factor; existing ones are kept (a differing partition count is logged as a
    warning, not changed). ``configs``: topic name -> topic configs to create it with
    (``cleanup.policy=compact``, say). ``client_options`` are passed to kafka-python's
    ``KafkaAdminClient`` (security_protocol, sasl_mechanism, ssl_cafile, ...).
    Raises ``kafka.errors.KafkaError`` when the broker refuses a creation.
    """
    if not topics:
        return
    for name, count in topics.items():
        if not name or count < 1:
            raise ValueError(f"invalid topic spec {name!r}: {count!r}")
    admin = _admin(bootstrap, timeout_s, **client_options)
    try:
        existing = set(admin.list_topics())
        missing = {name: count for name, count in topics.items() if name not in existing}
        if missing:
            _create(admin, missing, replication_factor, configs or {})
            log.info("created topics %s", ", ".join(f"{n}({c})" for n, c in missing.items()))
        present = [name for name in topics if name not in missing]
        if present:
            for name, count in _partition_counts(admin, present).items():
                if count != topics[name]:
                    log.warning(
                        "topic %s exists with %d partitions (configured: %d); left unchanged",
                        name,
                        count,
                        topics[name],
                    )
    finally:
        admin.close()


def create_topics(settings: Settings, *, timeout_s: float = 30.0) -> dict[str, int]:
    """Create the application's topics on the configured cluster; returns what is ready."""
    topics = topics_from_settings(settings)
    ensure_topics(
        settings.kafka_bootstrap,
        topics,
        replication_factor=settings.replication_factor,
        timeout_s=timeout_s,
        configs=topic_configs_from_settings(settings),
        **settings.client_options(),
    )
    return topics


# The topics a worker consumes: keyed by customer id, one partition per shard, so each
# must have exactly TIERSTREAM_PARTITIONS partitions (the shard of an id is its partition).
INPUT_TOPIC_SETTINGS = ("TOPIC_PURCHASES", "TOPIC_ENGAGEMENTS", "TOPIC_ERASURES", "TOPIC_PROFILES")


def worker_topic_problem(settings: Settings, *, timeout_s: float = 10.0) -> str | None:
    """Why a worker cannot run on the cluster's topics (one line), or None.

    Without this a missing input topic is only a log line of the consumer's ("Ignoring
    missing topic") and the worker runs without it: its events wait, unscored, while
    everything looks healthy. Raises what ``_admin`` and kafka-python raise when the
    cluster cannot be asked (the caller decides whether that may wait).
    """
    names = {setting: getattr(settings, setting.lower()) for setting in TOPIC_SETTINGS}
    contributions = settings.topic_account_contributions
    admin = _admin(settings.kafka_bootstrap, timeout_s, **settings.client_options())
    try:
        counts = _partition_counts(admin, sorted({*names.values(), contributions}))
    finally:
        admin.close()
    missing = sorted({name for name in names.values() if name not in counts})
    if missing:
        return f"topic(s) {', '.join(missing)} do not exist: run `tierstream topics create`"
    # Account shard p is partition p of the contributions topic, keyed by account like the
    # inputs by customer; the worker creates it when missing, with the shards' count.
    sharded = [names[setting] for setting in INPUT_TOPIC_SETTINGS]
    if contributions in counts:
        sharded.append(contributions)
    for name in sharded:
        if counts[name] != settings.partitions:
            return (
                f"topic {name} has {counts[name]} partitions but TIERSTREAM_PARTITIONS is "
                f"{settings.partitions}: input topics (and the accounts' contributions topic) need "
                "one partition per shard "
                "(after adding partitions, run `tierstream repartition`: docs/operations.md)"
            )
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tierstream.topics",
        description="Create tierstream's Kafka topics (idempotent); the same as "
        "`tierstream topics create`. Settings: TIERSTREAM_* (see docs/operations.md).",
    )
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: the settings')")
    parser.add_argument("--replication-factor", type=int, help="default: the settings'")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the broker"
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
    except ValidationError as exc:
        print(
            f"tierstream.topics: invalid TIERSTREAM_ settings: {exc.error_count()} "
            f"problem(s): {_problems(exc)}",
            file=sys.stderr,
        )
        return 2
    overrides: dict[str, Any] = {}
    if args.bootstrap:
        overrides["kafka_bootstrap"] = args.bootstrap
    if args.replication_factor is not None:
        overrides["replication_factor"] = args.replication_factor
    settings = settings.model_copy(update=overrides)
    try:
        topics = create_topics(settings, timeout_s=args.timeout)
    except (KafkaError, ValueError) as exc:
        print(f"tierstream.topics: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(ready_line(settings, topics))
    return 0


def ready_line(settings: Settings, topics: Mapping[str, int]) -> str:
    listed = ", ".join(f"{name} ({count}p)" for name, count in topics.items())
    return f"topics ready on {settings.kafka_bootstrap}: {listed}"


def _problems(exc: ValidationError) -> str:
    # Without the values: the environment holds passwords.
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors()
    )


if __name__ == "__main__":
    sys.exit(main())
