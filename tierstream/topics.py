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

Environment (same names as the application settings, prefix ``TIERSTREAM_``):
``KAFKA_BOOTSTRAP`` (default ``127.0.0.1:9092``), ``TOPIC_PURCHASES``,
``TOPIC_ENGAGEMENTS``, ``TOPIC_TIER_CHANGES``, ``TOPIC_DEAD_LETTERS``,
``PARTITIONS`` (partitions of the input and tier-change topics, default 4),
``DEAD_LETTER_PARTITIONS`` (default 1) and ``REPLICATION_FACTOR`` (default 1).
Connection security for a remote cluster is read from the same
``TIERSTREAM_KAFKA_SECURITY_PROTOCOL`` / ``_SASL_*`` / ``_SSL_*`` variables the worker
uses (see docs/operations.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import kafka.errors
from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_PARTITIONS = 4
DEFAULT_DEAD_LETTER_PARTITIONS = 1

# Setting name (after TIERSTREAM_) -> default topic name, as in the product spec.
TOPIC_SETTINGS: dict[str, str] = {
    "TOPIC_PURCHASES": "purchases",
    "TOPIC_ENGAGEMENTS": "engagements",
    "TOPIC_TIER_CHANGES": "tier-changes",
    "TOPIC_DEAD_LETTERS": "dead-letters",
    "TOPIC_ERASURES": "erasures",
}

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


def _env(name: str, default: str, environ: Mapping[str, str]) -> str:
    value = environ.get(f"TIERSTREAM_{name}", "").strip()
    return value or default


def _positive_int(name: str, default: int, environ: Mapping[str, str]) -> int:
    raw = _env(name, str(default), environ)
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"TIERSTREAM_{name} must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"TIERSTREAM_{name} must be a positive integer, got {raw!r}")
    return value


def topics_from_env(environ: Mapping[str, str] | None = None) -> dict[str, int]:
    """Topic name -> partition count, from the ``TIERSTREAM_`` environment."""
    environ = os.environ if environ is None else environ
    partitions = _positive_int("PARTITIONS", DEFAULT_PARTITIONS, environ)
    dead_letter_partitions = _positive_int(
        "DEAD_LETTER_PARTITIONS", DEFAULT_DEAD_LETTER_PARTITIONS, environ
    )
    topics: dict[str, int] = {}
    for setting, default in TOPIC_SETTINGS.items():
        name = _env(setting, default, environ)
        count = dead_letter_partitions if setting == "TOPIC_DEAD_LETTERS" else partitions
        if name in topics and topics[name] != count:
            raise ValueError(f"topic {name!r} is configured twice with different partition counts")
        topics[name] = count
    return topics


def kafka_security_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """kafka-python connection options from ``TIERSTREAM_KAFKA_*`` security settings.

    Empty when nothing is set (plaintext, as for the local development broker).
    """
    environ = os.environ if environ is None else environ
    options: dict[str, Any] = {}
    protocol = _env("KAFKA_SECURITY_PROTOCOL", "", environ).upper()
    if protocol:
        options["security_protocol"] = protocol
    mechanism = _env("KAFKA_SASL_MECHANISM", "", environ).upper()
    if mechanism:
        options["sasl_mechanism"] = mechanism
        options["sasl_plain_username"] = _env("KAFKA_SASL_USERNAME", "", environ) or None
        options["sasl_plain_password"] = _env("KAFKA_SASL_PASSWORD", "", environ) or None
    for setting, option in (
        ("KAFKA_SSL_CAFILE", "ssl_cafile"),
        ("KAFKA_SSL_CERTFILE", "ssl_certfile"),
        ("KAFKA_SSL_KEYFILE", "ssl_keyfile"),
        ("KAFKA_SSL_PASSWORD", "ssl_password"),
    ):
        value = _env(setting, "", environ)
        if value:
            options[option] = value
    if _env("KAFKA_SSL_CHECK_HOSTNAME", "true", environ).lower() in {"0", "false", "no"}:
        options["ssl_check_hostname"] = False
    return options


def _admin(bootstrap: str, timeout_s: float, **options: Any) -> KafkaAdminClient:
    """Connect an admin client, retrying while the broker is still starting."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaAdminClient(
                bootstrap_servers=bootstrap,
                client_id="tierstream-topics",
                request_timeout_ms=15_000,
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


def _create(admin: KafkaAdminClient, topics: Mapping[str, int], replication_factor: int) -> None:
    """CreateTopics for ``topics``; an already existing topic is not an error."""
    if int(kafka.__version__.split(".")[0]) >= 3:
        spec: Any = {
            name: {"num_partitions": count, "replication_factor": replication_factor}
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
                admin.create_topics([NewTopic(name, count, replication_factor)], timeout_ms=30_000)
            except TopicAlreadyExistsError:
                pass


def ensure_topics(
    bootstrap: str,
    topics: dict[str, int],
    *,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
    **client_options: Any,
) -> None:
    """Make sure every topic in ``topics`` (name -> partition count) exists.

    Missing topics are created with the given partition count and replication
    factor; existing ones are kept (a differing partition count is logged as a
    warning, not changed). ``client_options`` are passed to kafka-python's
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
            _create(admin, missing, replication_factor)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tierstream.topics",
        description="Create tierstream's Kafka topics (idempotent).",
    )
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("TIERSTREAM_KAFKA_BOOTSTRAP") or DEFAULT_BOOTSTRAP,
        help="Kafka bootstrap servers (default: $TIERSTREAM_KAFKA_BOOTSTRAP or %(default)s)",
    )
    parser.add_argument(
        "--replication-factor",
        type=int,
        default=int(os.environ.get("TIERSTREAM_REPLICATION_FACTOR") or 1),
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the broker"
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        topics = topics_from_env()
        ensure_topics(
            args.bootstrap,
            topics,
            replication_factor=args.replication_factor,
            timeout_s=args.timeout,
            **kafka_security_from_env(),
        )
    except (KafkaError, ValueError) as exc:
        print(f"tierstream.topics: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        listed = ", ".join(f"{name} ({count}p)" for name, count in topics.items())
        print(f"topics ready on {args.bootstrap}: {listed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
