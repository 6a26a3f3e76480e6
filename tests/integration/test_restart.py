"""The local services keep their data across a crash and restart.

The failure tests of the worker depend on this: they kill and restart the broker
and Redis with `infra/services.sh restart-kafka|restart-redis [--kill]`.
Only runs against the services that infra/services.sh manages.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer

from tests.integration.helpers import FreshTopics, committed_offsets, delete_groups

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "infra" / "services.sh"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(os.environ.get("TIERSTREAM_TEST_KAFKA_BOOTSTRAP")),
        reason="restarts only the services started by infra/services.sh",
    ),
]


def services(*args: str) -> None:
    result = subprocess.run(
        ["bash", str(SERVICES), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, f"services.sh {' '.join(args)}:\n{result.stdout}{result.stderr}"


def wait_for_aof_write(client: redis.Redis, timeout: float = 10.0) -> None:
    """Wait until Redis has written its append-only buffer to the file.

    Under ``appendfsync everysec`` Redis may acknowledge a write and postpone writing the
    file for up to 2 s while a background fsync is slow (a busy disk, as late in a full test
    run): a SIGKILL in that moment loses the write. That loss is expected and the worker is
    built for it (Kafka offsets committed 3 s behind Redis, docs/operations.md); what this
    test checks is that whatever reached the file survives SIGKILL and a restart.
    """
    deadline = time.monotonic() + timeout
    while client.info("persistence").get("aof_buffer_length", 0):
        assert time.monotonic() < deadline, "Redis kept its AOF buffer unwritten for 10 s"
        time.sleep(0.05)


def test_redis_keeps_written_data_across_kill(redis_client: redis.Redis) -> None:
    redis_client.set("restart:key", b"kept")
    redis_client.hset("{p1}:c:7", mapping={"tier": "A", "version": 2})
    assert redis_client.info("persistence")["aof_enabled"] == 1
    wait_for_aof_write(redis_client)
    services("restart-redis", "--kill")
    redis_client.connection_pool.disconnect()
    assert redis_client.get("restart:key") == b"kept"
    assert redis_client.hgetall("{p1}:c:7") == {b"tier": b"A", b"version": b"2"}


def test_kafka_keeps_messages_and_offsets_across_kill(
    kafka_bootstrap: str, fresh_topics: FreshTopics, unique_name: Callable[[str], str]
) -> None:
    topic = fresh_topics({"events": 2})["events"]
    group = unique_name("group")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for i in range(10):
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    producer.flush(timeout=30)
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=4,
    )
    first: list[bytes] = []
    deadline = time.monotonic() + 30
    while not first and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            first.extend(r.value for r in records)
    consumer.commit()
    consumer.close()
    before = committed_offsets(kafka_bootstrap, group)
    assert 0 < sum(before.values()) == len(first) < 10

    services("restart-kafka", "--kill")

    assert committed_offsets(kafka_bootstrap, group) == before
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    rest: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(first) + len(rest) < 10 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            rest.extend(r.value for r in records)
    consumer.close()
    assert sorted(first + rest) == sorted(f"v{i}".encode() for i in range(10))
    delete_groups(kafka_bootstrap, [group])
