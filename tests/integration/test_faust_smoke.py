"""A minimal faust-streaming app against the local Kafka 4 broker.

It proves what the streaming worker relies on: a Faust agent in a consumer group
consumes a topic, produces to another, and commits its offsets, on a broker that
does not auto-create topics. The app runs in-process in an asyncio task.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import aiokafka
import faust
from kafka import KafkaProducer

from tests.integration.helpers import FreshTopics, committed_offsets, delete_groups

COUNT = 20


def test_faust_agent_consumes_produces_and_commits(
    kafka_bootstrap: str,
    fresh_topics: FreshTopics,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    topics = fresh_topics({"source": 2, "sink": 1})
    app_id = unique_name("faust-smoke")
    # Faust declares its leader-assignor topic itself (topic_allow_declare); remove it after.
    fresh_topics.track(f"{app_id}-__assignor-__leader")

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        for i in range(COUNT):
            value = json.dumps({"customer_id": f"c{i % 5}", "n": i}).encode()
            producer.send(topics["source"], key=f"c{i % 5}".encode(), value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()

    app = faust.App(
        app_id,
        broker=f"kafka://{kafka_bootstrap}",
        store="memory://",
        web_enabled=False,
        # Faust makes "<app id>-data/" in the working directory unless told otherwise,
        # even with the memory store.
        datadir=str(tmp_path / "faust-data"),
        # The settings docs/operations.md lists for the worker:
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=True,
        topic_replication_factor=1,
        broker_commit_interval=0.5,
        # Don't let the test linger in Faust's shutdown waits.
        stream_wait_empty=False,
    )
    source = app.topic(topics["source"], key_type=bytes, value_serializer="json")
    sink = app.topic(topics["sink"], key_type=bytes, value_serializer="json")

    @app.agent(source)
    async def double(stream: faust.StreamT) -> None:
        async for key, value in stream.items():
            await sink.send(key=key, value={**value, "n2": value["n"] * 2})

    async def scenario() -> tuple[list[dict[str, int]], dict[tuple[str, int], int]]:
        await app.start()
        try:
            consumer = aiokafka.AIOKafkaConsumer(
                topics["sink"], bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
            )
            await consumer.start()
            outputs: list[dict[str, int]] = []
            loop = asyncio.get_running_loop()
            try:
                deadline = loop.time() + 25
                while len(outputs) < COUNT and loop.time() < deadline:
                    batches = await consumer.getmany(timeout_ms=500)
                    for records in batches.values():
                        outputs.extend(json.loads(r.value) for r in records)  # type: ignore[arg-type]
            finally:
                await consumer.stop()
            # Offsets are committed every broker_commit_interval once processed.
            offsets: dict[tuple[str, int], int] = {}
            deadline = loop.time() + 10
            while loop.time() < deadline:
                offsets = await asyncio.to_thread(committed_offsets, kafka_bootstrap, app_id)
                if sum(offsets.get((topics["source"], p), 0) for p in (0, 1)) >= COUNT:
                    break
                await asyncio.sleep(0.3)
            return outputs, offsets
        finally:
            await app.stop()

    started = time.monotonic()
    outputs, offsets = asyncio.run(asyncio.wait_for(scenario(), timeout=45))
    elapsed = time.monotonic() - started

    assert sorted(o["n"] for o in outputs) == list(range(COUNT))
    assert all(o["n2"] == 2 * o["n"] for o in outputs)
    source_offsets = {p: offsets.get((topics["source"], p)) for p in (0, 1)}
    assert None not in source_offsets.values(), offsets
    assert sum(o for o in source_offsets.values() if o is not None) == COUNT, offsets
    assert elapsed < 30, f"the Faust round trip took {elapsed:.1f}s"
    delete_groups(kafka_bootstrap, [app_id])
