"""Sending erasure requests to the erasures topic (the ``erase`` command and the API).

Requests go through the topic, not straight to Redis: keyed by the customer id, each lands
on the customer's partition, so the shard's one writer applies it in order with the
customer's events, in the same fenced, atomic commit (tierstream/erasure.py).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaProducer

from tierstream.erasure import ErasureRequest
from tierstream.settings import Settings


class ErasureRequester:
    """A Kafka producer of erasure requests, created on first use; thread-safe."""

    def __init__(self, settings: Settings) -> None:
        # Everything about the connection (bootstrap, SASL, TLS) comes from the settings,
        # like every other Kafka client of tierstream.
        self.bootstrap = settings.kafka_bootstrap
        self.topic = settings.topic_erasures
        self._options = settings.client_options()
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def request(
        self, customer_ids: Iterable[str], *, suppress: bool = False
    ) -> list[dict[str, Any]]:
        """Send one request per id, wait for Kafka's acknowledgements, and return them with
        where they landed (partition, offset)."""
        requests = [
            ErasureRequest(
                event_id=f"erasure-{uuid.uuid4()}",
                customer_id=cid,
                requested_at=datetime.now(UTC),
                suppress=suppress,
            )
            for cid in customer_ids
        ]
        with self._lock:
            producer = self._connect()
            futures = [
                producer.send(
                    self.topic,
                    key=r.customer_id.encode("utf-8"),
                    value=r.model_dump_json().encode("utf-8"),
                )
                for r in requests
            ]
            producer.flush(timeout=30)
        sent = []
        for request, future in zip(requests, futures, strict=True):
            metadata = future.get(timeout=30)
            sent.append(
                {
                    **request.model_dump(mode="json"),
                    "topic": self.topic,
                    "partition": metadata.partition,
                    "offset": metadata.offset,
                }
            )
        return sent

    def _connect(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap, acks="all", **self._options
            )
        return self._producer

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=10)
                self._producer = None
