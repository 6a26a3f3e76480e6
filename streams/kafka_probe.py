"""Cheap, bounded Kafka look-ups for the API: reachability and end offsets (for lag).

Both are cached and single-flight: however many health probes, dashboards and scrapers
ask at once, the broker sees at most one request per time-to-live, and no caller waits
longer than the timeout (a blackholed broker must not hang a health check).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.client import AIOKafkaClient
from aiokafka.structs import TopicPartition

log = logging.getLogger("tierstream.kafka_probe")

# A metadata round trip to a healthy broker takes milliseconds; a second means the broker,
# or the path to it, is in trouble, and a health check has to answer promptly either way.
METADATA_TIMEOUT = 1.0
# A health answer is reused this long, so a burst of probes (load balancer, orchestrator,
# dashboard) costs the broker one metadata request.
HEALTH_TTL = 2.0
# End offsets need a metadata request and one ListOffsets per leader: allow a little more.
OFFSETS_TIMEOUT = 2.0
# Lag is scraped every 15-60 s typically; 5 s keeps a fast scraper from adding load.
OFFSETS_TTL = 5.0


@dataclass(frozen=True, slots=True)
class KafkaHealth:
    ok: bool
    detail: str
    checked_at: float  # time.monotonic()
    seconds: float  # how long the check took


class KafkaProbe:
    """Reachability and end offsets of one Kafka cluster, cached (see the module doc)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "tierstream-api",
        metadata_timeout: float = METADATA_TIMEOUT,
        health_ttl: float = HEALTH_TTL,
        offsets_timeout: float = OFFSETS_TIMEOUT,
        offsets_ttl: float = OFFSETS_TTL,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        # Security (SASL, TLS): KafkaSettings.client_options(), the workers' own.
        self.client_options = dict(client_options or {})
        self.client_id = client_id
        self.metadata_timeout = metadata_timeout
        self.health_ttl = health_ttl
        self.offsets_timeout = offsets_timeout
        self.offsets_ttl = offsets_ttl
        self._health: KafkaHealth | None = None
        self._health_lock = asyncio.Lock()
        self._offsets: tuple[float, frozenset[TopicPartition], dict[TopicPartition, int]] | None
        self._offsets = None
        self._offsets_lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None

    async def health(self) -> KafkaHealth:
        """Whether a broker answers a metadata request within the timeout (cached)."""
        async with self._health_lock:
            cached = self._health
            if cached is not None and time.monotonic() - cached.checked_at < self.health_ttl:
                return cached
            started = time.monotonic()
            try:
                brokers = await asyncio.wait_for(self._metadata(), self.metadata_timeout)
                ok, detail = True, f"metadata from {self.bootstrap}: {brokers} broker(s)"
            except TimeoutError:
                ok, detail = False, f"no metadata from {self.bootstrap} within "
                detail += f"{self.metadata_timeout:g}s"
            except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy", with its reason
                text = str(exc)  # aiokafka's errors name themselves already
                name = type(exc).__name__
                ok, detail = False, text if text.startswith(name) else f"{name}: {text}"
            finished = time.monotonic()
            self._health = KafkaHealth(ok, detail, finished, finished - started)
            return self._health

    async def _metadata(self) -> int:
        client = AIOKafkaClient(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            request_timeout_ms=int(self.metadata_timeout * 1000),
            **self.client_options,
        )
        try:
            await client.bootstrap()
            return len(client.cluster.brokers())
        finally:
            await client.close()

    async def end_offsets(
        self, partitions: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        """(topic, partition) -> end offset (the next offset to be written), cached.

        Raises on timeout or any Kafka error (callers report lag as unknown then).
        """
        wanted = frozenset(TopicPartition(topic, p) for topic, p in partitions)
        async with self._offsets_lock:
            cached = self._offsets
            if (
                cached is not None
                and cached[1] == wanted
                and time.monotonic() - cached[0] < self.offsets_ttl
            ):
                return {(tp.topic, tp.partition): n for tp, n in cached[2].items()}
            try:
                found = await asyncio.wait_for(self._end_offsets(wanted), self.offsets_timeout)
            except Exception:
                await self._drop_consumer()  # start afresh next time
                raise
            self._offsets = (time.monotonic(), wanted, found)
            return {(tp.topic, tp.partition): n for tp, n in found.items()}

    async def _end_offsets(self, wanted: frozenset[TopicPartition]) -> dict[TopicPartition, int]:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id=self.client_id,
                group_id=None,  # looks only; never joins the workers' group
                enable_auto_commit=False,
                request_timeout_ms=int(self.offsets_timeout * 1000),
                **self.client_options,
            )
            await consumer.start()
            self._consumer = consumer
        offsets: dict[TopicPartition, int] = await self._consumer.end_offsets(list(wanted))
        return offsets

    async def _drop_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception as exc:  # noqa: BLE001 - closing a broken client
                log.debug("closing the offsets consumer failed: %r", exc)

    async def close(self) -> None:
        await self._drop_consumer()
