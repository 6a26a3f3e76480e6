"""Reading a topic with its headers, for the subscription and delivery tests."""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition


def read_with_headers(bootstrap: str, topic: str, timeout: float = 60) -> list[Any]:
    """Every record of ``topic`` (up to its current end), with key, value and headers."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        ends = consumer.end_offsets(tps)
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        positions = dict.fromkeys(tps, 0)
        deadline = time.monotonic() + timeout
        while any(positions[tp] < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=1000, max_records=10_000).items():
                out.extend(records)
                positions[tp] = records[-1].offset + 1
        return out
    finally:
        consumer.close()
