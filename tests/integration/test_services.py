"""The local services answer and behave like the real thing the application relies on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiokafka
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.integration.helpers import FreshTopics, admin_client, committed_offsets, delete_groups
from tierstream.topics import ensure_topics, topics_from_env

MESSAGES = [(f"customer-{i % 7}".encode(), f'{{"n": {i}}}'.encode()) for i in range(30)]


def _partition_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    admin = admin_client(bootstrap)
    try:
        described = admin.describe_topics(names)
    finally:
        admin.close()
    return {
        (topic.get("name") or topic.get("topic")): len(topic["partitions"]) for topic in described
    }


def test_application_topics_exist_with_configured_partitions(kafka_bootstrap: str) -> None:
    """`services.sh up` created the app's topics itself (the broker never auto-creates)."""
    expected = topics_from_env()
    assert _partition_counts(kafka_bootstrap, list(expected)) == expected


def test_ensure_topics_is_idempotent(
    kafka_bootstrap: str, fresh_topics: FreshTopics, unique_name: Callable[[str], str]
) -> None:
    names = fresh_topics({"a": 3, "b": 1})
    # Again, plus a new one: existing topics are kept, the new one is created.
    extra = unique_name("c")
    fresh_topics.track(extra)
    ensure_topics(kafka_bootstrap, {names["a"]: 3, names["b"]: 1, extra: 2})
    ensure_topics(kafka_bootstrap, {names["a"]: 3, names["b"]: 1, extra: 2})
    assert _partition_counts(kafka_bootstrap, [names["a"], names["b"], extra]) == {
        names["a"]: 3,
        names["b"]: 1,
        extra: 2,
    }


def test_kafka_python_round_trip(
    kafka_bootstrap: str, fresh_topics: FreshTopics, unique_name: Callable[[str], str]
) -> None:
    topic = fresh_topics({"events": 3})["events"]
    group = unique_name("group")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        for key, value in MESSAGES:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    received: list[tuple[bytes, bytes, int]] = []
    try:
        deadline = time.monotonic() + 30
        while len(received) < len(MESSAGES) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received.extend((r.key, r.value, r.partition) for r in records)
        consumer.commit()
    finally:
        consumer.close()

    assert sorted((k, v) for k, v, _ in received) == sorted(MESSAGES)
    # Same key, same partition: the property the scorer's per-customer ordering relies on.
    partitions_by_key: dict[bytes, set[int]] = {}
    for key, _, partition in received:
        partitions_by_key.setdefault(key, set()).add(partition)
    assert all(len(parts) == 1 for parts in partitions_by_key.values())
    offsets = committed_offsets(kafka_bootstrap, group)
    assert sum(offsets.values()) == len(MESSAGES)
    delete_groups(kafka_bootstrap, [group])


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


def test_aiokafka_round_trip(
    kafka_bootstrap: str, fresh_topics: FreshTopics, unique_name: Callable[[str], str]
) -> None:
    # Kafka 4 removed the old protocol versions that aiokafka < 0.13 still used.
    assert _version(aiokafka.__version__) >= (0, 13), aiokafka.__version__
    topic = fresh_topics({"events": 2})["events"]
    group = unique_name("group")

    async def scenario() -> tuple[list[tuple[bytes, bytes]], dict[TopicPartition, int]]:
        producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all"
        )
        await producer.start()
        try:
            for key, value in MESSAGES:
                await producer.send(topic, key=key, value=value)
            await producer.flush()
        finally:
            await producer.stop()

        consumer = aiokafka.AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        received: list[tuple[bytes, bytes]] = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while len(received) < len(MESSAGES) and loop.time() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    received.extend((r.key, r.value) for r in records)  # type: ignore[misc]
            await consumer.commit()
            committed = {tp: await consumer.committed(tp) or 0 for tp in consumer.assignment()}
        finally:
            await consumer.stop()
        return received, committed

    received, committed = asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    assert sorted(received) == sorted(MESSAGES)
    assert sum(committed.values()) == len(MESSAGES)
    assert sum(committed_offsets(kafka_bootstrap, group).values()) == len(MESSAGES)
    delete_groups(kafka_bootstrap, [group])


def test_redis_set_get(redis_client: redis.Redis) -> None:
    assert redis_client.dbsize() == 0  # a fresh database for each test
    redis_client.set("tierstream:test:key", b"value")
    assert redis_client.get("tierstream:test:key") == b"value"
    redis_client.hset("{p0}:c:42", mapping={"tier": "VIP", "version": 3})
    assert redis_client.hgetall("{p0}:c:42") == {b"tier": b"VIP", b"version": b"3"}
    assert redis_client.hincrby("{p0}:c:42", "version", 1) == 4


def test_redis_persists_with_append_only_file(redis_client: redis.Redis) -> None:
    """The local Redis keeps its state across a restart (the failure tests rely on it)."""
    config = redis_client.config_get("appendonly")
    assert config.get("appendonly") == "yes"
