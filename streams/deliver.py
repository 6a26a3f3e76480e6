"""``tierstream deliver``: subscriptions' tier changes to derived topics and webhooks.

Each subscription of the scoring config runs its own loop with its own consumer group on
``tier-changes`` (``<app_id>-deliver-<name>``), so neither scoring nor another
subscription ever waits for a slow or dead endpoint. A loop takes a batch of changes,
keeps those its ``when`` matches, and:

- sends them to its derived topic (same key, value and headers) and waits for the acks;
- POSTs each to its webhook (signed with HMAC-SHA256), a customer's changes one after the
  other (in order), different customers concurrently, at most ``concurrency`` requests in
  flight. A 2xx is delivered; anything else, a timeout or a refused connection is retried
  with jittered exponential backoff, the same body and ``event_id`` on every attempt;
  after ``max_attempts`` the change goes to the dead-letters topic (kind ``webhook``).

Only then are the batch's offsets committed: a crash (kill -9 included) redelivers the
uncommitted batch, so delivery is at least once and nothing is lost.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import ClientError, ClientSession, ClientTimeout
from aiokafka.errors import CommitFailedError, IllegalStateError

from scoring.events import DeadLetter
from scoring.reactions import Subscription, Webhook
from streams.failures import Backoff

log = logging.getLogger("tierstream.deliver")

WEBHOOK_ERROR_KIND = "webhook"
BATCH_RECORDS = 500
MAX_ERROR_CHARS = 2_000  # as the worker's dead letters (docs/contracts.md)


class DeliverySetupError(ValueError):
    """The subscriptions cannot be delivered as configured (a start-up error)."""


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Tierstream-Signature`` header value of ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def webhook_secrets(
    subscriptions: tuple[Subscription, ...], environ: Mapping[str, str]
) -> dict[str, bytes]:
    """Subscription name -> its webhook's HMAC key, read from the named variables."""
    secrets: dict[str, bytes] = {}
    for subscription in subscriptions:
        secret = webhook_secret(subscription, environ)
        if secret is not None:
            secrets[subscription.name] = secret
    return secrets


def webhook_secret(subscription: Subscription, environ: Mapping[str, str]) -> bytes | None:
    """The HMAC key of ``subscription``'s webhook (None: it has no webhook)."""
    hook = subscription.webhook
    if hook is None:
        return None
    secret = environ.get(hook.secret_env, "")
    if not secret:
        raise DeliverySetupError(
            f"subscription {subscription.name!r}: the webhook secret variable "
            f"{hook.secret_env} is not set (or empty)"
        )
    return secret.encode("utf-8")


@dataclass
class Counts:
    matched: int = 0
    to_topic: int = 0
    delivered: int = 0
    attempts: int = 0
    dead_lettered: int = 0


@dataclass
class Endpoint:
    """A subscription's webhook: its key, session and concurrency bound."""

    subscription: str
    hook: Webhook
    secret: bytes
    session: ClientSession
    slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.slots = asyncio.Semaphore(self.hook.concurrency)

    async def attempt(self, body: bytes, event_id: str) -> str | None:
        """One POST; None when delivered, else why not."""
        headers = {
            "Content-Type": "application/json",
            "X-Tierstream-Event-Id": event_id,
            "X-Tierstream-Subscription": self.subscription,
            "X-Tierstream-Signature": signature(self.secret, body),
        }
        async with self.slots:
            try:
                async with self.session.post(
                    self.hook.url,
                    data=body,
                    headers=headers,
                    timeout=ClientTimeout(total=self.hook.timeout_seconds),
                ) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        return None
                    return f"HTTP {response.status}"
            except TimeoutError:
                return f"no answer within {self.hook.timeout_seconds:g}s"
            except ClientError as exc:
                return f"{type(exc).__name__}: {exc}"


class SubscriptionLoop:
    """One subscription: its consumer, and delivery of each batch before its commit."""

    def __init__(
        self,
        subscription: Subscription,
        consumer: Any,
        producer: Any,
        endpoint: Endpoint | None,
        dead_letters: str,
    ) -> None:
        self.subscription = subscription
        self.consumer = consumer
        self.producer = producer
        self.endpoint = endpoint
        self.dead_letters = dead_letters
        self.counts = Counts()
        self._behind = 0  # records fetched or not yet fetched, not delivered and committed

    def lag(self) -> int:
        return self._behind

    async def _unfetched(self) -> int:
        """Records on the assigned partitions beyond what was fetched."""
        behind = 0
        for partition in self.consumer.assignment():
            highwater = self.consumer.highwater(partition)
            try:
                position = await self.consumer.position(partition)
            except IllegalStateError:  # revoked meanwhile (a rebalance): not ours to count
                continue
            if highwater is not None:
                behind += max(0, highwater - position)
        return behind

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            batches = await self.consumer.getmany(timeout_ms=500, max_records=BATCH_RECORDS)
            records = [record for batch in batches.values() for record in batch]
            self._behind = await self._unfetched() + len(records)
            if records:
                await self.deliver(records)
                try:
                    await self.consumer.commit()
                except (CommitFailedError, IllegalStateError) as exc:
                    # The group rebalanced meanwhile: the new owner delivers the batch
                    # again (at least once), from the last committed offsets.
                    log.warning(
                        "subscription %s: offsets not committed (%s); they will be redelivered",
                        self.subscription.name,
                        exc,
                    )
                self._behind = await self._unfetched()

    async def deliver(self, records: list[Any]) -> None:
        matching = []
        for record in records:
            try:
                change = orjson.loads(record.value)
            except orjson.JSONDecodeError:
                continue  # not a tier change; nothing of ours writes such a message
            if isinstance(change, dict) and self.subscription.when.matches(change):
                matching.append((record, change))
        if not matching:
            return
        self.counts.matched += len(matching)
        await asyncio.gather(self._to_topic(matching), self._to_webhook(matching))

    async def _to_topic(self, matching: list[tuple[Any, dict[str, Any]]]) -> None:
        topic = self.subscription.topic
        if topic is None:
            return
        sends = [
            await self.producer.send(
                topic, key=record.key, value=record.value, headers=list(record.headers or ())
            )
            for record, _ in matching
        ]
        await asyncio.gather(*sends)
        self.counts.to_topic += len(sends)

    async def _to_webhook(self, matching: list[tuple[Any, dict[str, Any]]]) -> None:
        if self.endpoint is None:
            return
        by_customer: dict[bytes | None, list[tuple[Any, dict[str, Any]]]] = {}
        for record, change in matching:
            by_customer.setdefault(record.key, []).append((record, change))
        await asyncio.gather(*(self._in_order(changes) for changes in by_customer.values()))

    async def _in_order(self, changes: list[tuple[Any, dict[str, Any]]]) -> None:
        for record, change in changes:
            await self._post(record, str(change.get("event_id", "")))

    async def _post(self, record: Any, event_id: str) -> None:
        assert self.endpoint is not None
        hook = self.endpoint.hook
        backoff = Backoff(base=hook.retry_base_seconds, cap=hook.retry_cap_seconds)
        error = ""
        for attempt in range(1, hook.max_attempts + 1):
            self.counts.attempts += 1
            failure = await self.endpoint.attempt(record.value, event_id)
            if failure is None:
                self.counts.delivered += 1
                return
            error = failure
            if attempt < hook.max_attempts:
                await asyncio.sleep(backoff.next())
        log.warning(
            "subscription %s: change %s not delivered after %d attempts (%s); dead-lettered",
            self.subscription.name,
            event_id,
            hook.max_attempts,
            error,
        )
        await self._dead_letter(record, f"{error} (after {hook.max_attempts} attempts)")

    async def _dead_letter(self, record: Any, error: str) -> None:
        letter = DeadLetter(
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            key_base64=base64.b64encode(record.key).decode() if record.key else None,
            payload_base64=base64.b64encode(record.value).decode(),
            error_kind=WEBHOOK_ERROR_KIND,
            error=f"subscription {self.subscription.name}: {error}"[:MAX_ERROR_CHARS],
            received_at=datetime.now(UTC),
        )
        value = letter.model_dump_json().encode("utf-8")
        await (await self.producer.send(self.dead_letters, value=value))
        self.counts.dead_lettered += 1


async def report_counts(
    loops: list[SubscriptionLoop], every: float, stopping: asyncio.Event
) -> None:
    """A line per subscription every ``every`` seconds while there is something new."""
    last: dict[str, Counts] = {}
    while not stopping.is_set():
        try:
            await asyncio.wait_for(stopping.wait(), every)
        except TimeoutError:
            pass
        for loop in loops:
            counts = loop.counts
            if last.get(loop.subscription.name) != counts:
                log.info("subscription %s: %s", loop.subscription.name, counts)
                last[loop.subscription.name] = Counts(**vars(counts))
