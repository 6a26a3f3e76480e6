"""What ``tierstream repartition`` asks Kafka before it moves anything, and how it
delivers the outboxes the workers left.

Three checks, each a refusal with one line of explanation:

* **No worker runs.** The worker's consumer group (``TIERSTREAM_APP_ID``) has no member.
  A worker killed without leaving stays a member until its session times out.
* **The input topics have the new partition count** (``kafka-topics --alter
  --partitions N`` first): the store is laid out for the partitions the events will
  arrive on. So must the accounts' contributions topic, if it exists: account shard ``p``
  is its partition ``p``.
* **Nothing produced under the old count is left unapplied.** Every message still to be
  applied on an old partition ``p`` (from the offset the store holds for it to the end)
  must belong to ``p`` under the new count too, i.e. have been produced after the
  partitions were added: an older message for a customer who moves would be applied to a
  shard that no longer holds them. The same holds for account contributions and the
  account shards. The fix is to let the workers drain before adding
  partitions (pause the producers, wait for zero lag, stop the workers).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from tierstream.repartition import Deliver, RepartitionError
from tierstream.stores.base import murmur2
from tierstream.stores.outbox_codec import CHANGE_ENTRY, CONTRIBUTION_ENTRY, decode_entry
from tierstream.stores.redis import RedisStore

REQUEST_TIMEOUT_MS = 30_000


def check_no_workers(bootstrap: str, group: str, security: dict[str, Any]) -> None:
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS, **security
    )
    try:
        info = admin.describe_groups([group])[group]
    finally:
        admin.close()
    members = info.get("members") or []
    if members:
        raise RepartitionError(
            f"{len(members)} worker(s) are members of the consumer group {group!r} "
            f"(state {info.get('group_state')}): stop every worker first (a worker killed "
            "without leaving stays a member until its session times out)"
        )


def existing_topics(bootstrap: str, topics: Iterable[str], security: dict[str, Any]) -> list[str]:
    """Those of ``topics`` the cluster has (the accounts' internal topic is created by the
    first worker, so a deployment may not have it yet)."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS, **security
    )
    try:
        present = set(admin.list_topics())
    finally:
        admin.close()
    return [topic for topic in topics if topic in present]


def check_partitions(
    bootstrap: str, topics: Iterable[str], target: int, security: dict[str, Any]
) -> None:
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS, **security
    )
    try:
        described = admin.describe_topics(list(topics))
    finally:
        admin.close()
    for topic in described:
        if topic.get("error_code"):
            raise RepartitionError(f"topic {topic['name']!r}: error {topic['error_code']}")
        count = len(topic["partitions"])
        if count != target:
            raise RepartitionError(
                f"topic {topic['name']!r} has {count} partitions, not {target}: add them "
                f"first (kafka-topics.sh --alter --topic {topic['name']} --partitions {target})"
            )


def old_layout_messages(
    bootstrap: str,
    store: RedisStore,
    topics: Iterable[str],
    source: int,
    target: int,
    security: dict[str, Any],
) -> int:
    """Messages not yet applied on the old partitions whose key belongs elsewhere under
    ``target`` partitions (produced before the partitions were added)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        **security,
    )
    found = 0
    try:
        wanted = [TopicPartition(topic, p) for topic in topics for p in range(source)]
        ends = consumer.end_offsets(wanted)
        begins = consumer.beginning_offsets(wanted)
        for tp in wanted:
            start = max(store.offsets(tp.partition).get(tp.topic, 0), begins[tp])
            if start >= ends[tp]:
                continue
            consumer.assign([tp])
            consumer.seek(tp, start)
            position, empty_polls = start, 0
            # Offsets can end in records a consumer never sees (transaction markers):
            # stop after a few empty polls rather than wait for them.
            while position < ends[tp] and empty_polls < 5:
                records = consumer.poll(timeout_ms=2000).get(tp, [])
                empty_polls = 0 if records else empty_polls + 1
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    position = record.offset + 1
                    key = record.key or b""
                    if (murmur2(key) & 0x7FFFFFFF) % target != tp.partition:
                        found += 1
    finally:
        consumer.close()
    return found


def outbox_delivery(
    bootstrap: str,
    tier_changes: str,
    dead_letters: str,
    security: dict[str, Any],
    contributions: str | None = None,
) -> tuple[Deliver, KafkaProducer]:
    """A ``Deliver`` that sends outbox entries where the worker would, waiting for every
    acknowledgement (a failure raises: the entries stay in the outbox)."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", request_timeout_ms=REQUEST_TIMEOUT_MS, **security
    )

    def deliver(shard: int, entries: list[bytes]) -> None:
        futures = []
        for entry in entries:
            kind, key, value = decode_entry(entry)
            if kind == CHANGE_ENTRY:
                topic = tier_changes
            elif kind == CONTRIBUTION_ENTRY and contributions is not None:
                topic = contributions  # accounts' updates (streams/accounts.py)
            else:
                topic = dead_letters
            futures.append(producer.send(topic, key=key, value=value))
        producer.flush(REQUEST_TIMEOUT_MS / 1000)
        for future in futures:
            future.get(timeout=REQUEST_TIMEOUT_MS / 1000)

    return deliver, producer
