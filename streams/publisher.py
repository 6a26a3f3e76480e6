"""Publication of one shard's outbox: sends that never block the next batch.

Each committed step appends its tier changes and dead letters to the shard's outbox in
Redis and hands the same bytes here. They are sent at once (no waiting for acks on the
critical path); the position up to which every entry is acknowledged is trimmed from the
Redis outbox inside the shard's next commit (or by the timer when the shard is idle).

A delivery that fails is sent again, never awaited again: from the first failed entry
on, everything still pending is re-sent in order, so a customer's newest change is also
the last to arrive. Entries re-sent that had in fact arrived are duplicates with the same
``event_id``, which the tier-changes contract allows (at least once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from streams.change_headers import Headers, change_headers
from streams.failures import Backoff
from tierstream.stores.outbox_codec import CHANGE_ENTRY, CONTRIBUTION_ENTRY, decode_entry

log = logging.getLogger("tierstream.publisher")

# Entries in flight per shard before a step waits for the oldest acknowledgement: bounds
# the memory held for re-sending while Kafka is slow.
MAX_IN_FLIGHT = 20_000

# Sends records (key, value, headers) to a topic; one delivery future per record, in order.
SendMany = Callable[
    [str, list[tuple[bytes | None, bytes, Headers]]], Awaitable[list[asyncio.Future[Any]]]
]


@dataclass(slots=True)
class _Pending:
    position: int  # absolute position in the shard's outbox
    entry: bytes
    delivery: asyncio.Future[Any] | None
    headers: Headers | None = None  # a change's Kafka headers, built at its first send


class Publisher:
    """The unacknowledged tail of one shard's outbox, mirrored in memory."""

    def __init__(
        self,
        shard: int,
        send: SendMany,
        tier_changes: str,
        dead_letters: str,
        on_delivered: Callable[[int], None] | None = None,
        contributions: str | None = None,
    ) -> None:
        self.shard = shard
        # The internal topic of accounts' contribution updates (streams/accounts.py).
        self._contributions = contributions
        self._on_delivered = on_delivered
        self._send_many = send
        self._tier_changes = tier_changes
        self._dead_letters = dead_letters
        self._pending: deque[_Pending] = deque()
        self.delivered = 0  # every entry before this position is acknowledged by Kafka
        self.trimmed = 0  # the Redis outbox's head, as far as this publisher knows
        self.published = 0  # entries acknowledged (for the metrics)
        self.resent = 0
        self._backoff = Backoff(base=0.1, cap=5.0)
        self._resend_after = 0.0  # monotonic time before which failures are not re-sent

    def start_at(self, head: int) -> None:
        self.delivered = self.trimmed = head

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def publish(self, first: int, entries: Sequence[bytes]) -> None:
        """Send ``entries``, the outbox's entries from absolute position ``first`` on."""
        items = [_Pending(first + offset, entry, None) for offset, entry in enumerate(entries)]
        self._pending.extend(items)
        await self._send(items)
        while len(self._pending) > MAX_IN_FLIGHT:
            oldest = self._pending[0].delivery
            if oldest is not None and not oldest.done():
                await asyncio.wait([oldest])
            else:  # it failed: wait for its re-send's backoff instead of spinning
                await asyncio.sleep(max(0.0, self._resend_after - time.monotonic()))
            await self.settle()

    async def settle(self) -> int:
        """Note the acknowledged entries, re-send from the first failed one on; returns
        the position up to which the outbox may be trimmed."""
        pending = self._pending
        delivered = 0
        while pending:
            delivery = pending[0].delivery
            if delivery is None or not delivery.done():
                break
            if delivery.cancelled() or delivery.exception() is not None:
                if time.monotonic() >= self._resend_after:
                    self._resend_after = time.monotonic() + self._backoff.next()
                    await self._resend_from_head(delivery)
                break
            self.delivered = pending.popleft().position + 1
            delivered += 1
            self._backoff.reset()
        if delivered:
            self.published += delivered
            if self._on_delivered is not None:
                self._on_delivered(delivered)
        return max(self.delivered, self.trimmed)

    async def _resend_from_head(self, failed: asyncio.Future[Any]) -> None:
        reason = "cancelled" if failed.cancelled() else repr(failed.exception())
        log.warning(
            "shard %d: delivery of %d queued entries failed (%s); sending them again",
            self.shard,
            len(self._pending),
            reason,
        )
        self.resent += len(self._pending)
        await self._send(list(self._pending))

    async def _send(self, items: list[_Pending]) -> None:
        by_topic: dict[str, list[tuple[_Pending, bytes | None, bytes, Headers]]] = defaultdict(list)
        for item in items:
            kind, key, value = decode_entry(item.entry)
            if kind == CHANGE_ENTRY:
                if item.headers is None:
                    item.headers = change_headers(value)
                by_topic[self._tier_changes].append((item, key, value, item.headers))
            elif kind == CONTRIBUTION_ENTRY and self._contributions is not None:
                by_topic[self._contributions].append((item, key, value, []))
            else:
                by_topic[self._dead_letters].append((item, key, value, []))
        for topic, group in by_topic.items():
            records = [(key, value, headers) for _, key, value, headers in group]
            deliveries = await self._send_many(topic, records)
            for (item, _, _, _), delivery in zip(group, deliveries, strict=True):
                item.delivery = delivery
