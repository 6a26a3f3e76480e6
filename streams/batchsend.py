"""Records to Kafka in a few batches per step, not one producer call per record.

aiokafka's ``send`` does per record what a step's worth of tier changes can share: a
metadata wait, a partitioner hash, a size estimate and a future. ``BatchSender`` groups a
step's records by partition into ``BatchBuilder``s (``create_batch``/``send_batch``) and
remembers each key's partition, computed as the default partitioner computes it (murmur2
of the key, so a customer's changes land where a per-record send would put them).
Records without a key (dead letters) go round-robin. A record's third element is its
Kafka headers (a list of (name, bytes) pairs; empty for none).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from aiokafka.partitioner import murmur2

# (key, value, headers) of one record.
Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]

# Keys whose partition is remembered per topic before the memo starts afresh.
MEMO_LIMIT = 1_000_000


class BatchSender:
    """Sends lists of (key, value, headers) records through an aiokafka producer, in batches."""

    def __init__(self, producer: Callable[[], Any]) -> None:
        self._producer = producer  # the started AIOKafkaProducer, looked up at each send
        self._memo: dict[str, tuple[int, dict[bytes, int]]] = {}
        self._round_robin = itertools.count()

    async def __call__(self, topic: str, records: list[Record]) -> list[asyncio.Future[Any]]:
        producer = self._producer()
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: dict[int, list[int]] = defaultdict(list)
        for index, (key, _value, _headers) in enumerate(records):
            by_partition[self._partition(topic, key, partitions)].append(index)
        deliveries: list[asyncio.Future[Any] | None] = [None] * len(records)
        for partition, indexes in by_partition.items():
            batch, members = producer.create_batch(), list[int]()
            for index in indexes:
                key, value, headers = records[index]
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    # Full: send it and start another (order within a partition holds).
                    await self._submit(producer, batch, topic, partition, members, deliveries)
                    batch, members = producer.create_batch(), list[int]()
                    if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                        raise ValueError(f"a record of {len(value)} bytes fits in no batch")
                members.append(index)
            await self._submit(producer, batch, topic, partition, members, deliveries)
        assert all(delivery is not None for delivery in deliveries)
        return deliveries  # type: ignore[return-value]

    def _partition(self, topic: str, key: bytes | None, partitions: list[int]) -> int:
        count = len(partitions)
        if key is None:
            return partitions[next(self._round_robin) % count]
        known, memo = self._memo.get(topic, (0, {}))
        if known != count or len(memo) >= MEMO_LIMIT:
            memo = {}  # the topic gained partitions (or the memo is full): start afresh
            self._memo[topic] = (count, memo)
        partition = memo.get(key)
        if partition is None:
            partition = memo[key] = partitions[(murmur2(key) & 0x7FFFFFFF) % count]
        return partition

    @staticmethod
    async def _submit(
        producer: Any,
        batch: Any,
        topic: str,
        partition: int,
        members: list[int],
        deliveries: list[asyncio.Future[Any] | None],
    ) -> None:
        if not members:
            return
        delivery = await producer.send_batch(batch, topic, partition=partition)
        for index in members:
            deliveries[index] = delivery
