"""A webhook that does not answer in time: retried, then dead-lettered on the real Kafka.

The receiver here is a real HTTP server that holds some requests longer than the
subscription's ``timeout_seconds``; delivery must count each such attempt as failed
("no answer within ..."), retry with the same body and event id, and, once every attempt
has timed out, write a ``webhook`` dead letter that carries the change itself.
"""

from __future__ import annotations

import asyncio
import base64
import json
from types import SimpleNamespace

from aiohttp import ClientSession, web
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer

from scoring.reactions import Subscription
from streams.deliver import WEBHOOK_ERROR_KIND, Endpoint, SubscriptionLoop
from tests.integration.api_support import Served

SECRET = b"timeout-test-secret"
TIMEOUT = 0.3


class SlowReceiver:
    """Holds the first ``slow_attempts`` requests of each event id for 3 timeouts."""

    def __init__(self, slow_attempts: int) -> None:
        self.slow_attempts = slow_attempts
        self.attempts: dict[str, list[bytes]] = {}
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self.served = Served(app)
        self.url = f"{self.served.url}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        seen = self.attempts.setdefault(request.headers["X-Tierstream-Event-Id"], [])
        seen.append(body)
        if len(seen) <= self.slow_attempts:
            await asyncio.sleep(3 * TIMEOUT)
        return web.Response(status=200, text="ok")


def subscription(url: str, max_attempts: int) -> Subscription:
    return Subscription.model_validate(
        {
            "name": "slow",
            "webhook": {
                "url": url,
                "secret_env": "UNUSED_HERE",
                "timeout_seconds": TIMEOUT,
                "max_attempts": max_attempts,
                "retry_base_seconds": 0.01,
                "retry_cap_seconds": 0.05,
            },
        }
    )


def change_record(event_id: str) -> SimpleNamespace:
    value = json.dumps({"event_id": event_id, "customer_id": "c1", "new_tier": "A"}).encode()
    return SimpleNamespace(
        topic="tier-changes", partition=0, offset=41, key=b"c1", value=value, headers=()
    )


async def post_once(
    sub: Subscription, dead_letters: str, bootstrap: str | None
) -> SubscriptionLoop:
    producer = None
    if bootstrap is not None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
    try:
        async with ClientSession() as session:
            assert sub.webhook is not None
            endpoint = Endpoint(sub.name, sub.webhook, SECRET, session)
            loop = SubscriptionLoop(sub, None, producer, endpoint, dead_letters)
            await loop._post(change_record("e-1"), "e-1")
            return loop
    finally:
        if producer is not None:
            await producer.stop()


def test_a_webhook_that_times_out_is_retried_with_the_same_body_until_it_answers():
    receiver = SlowReceiver(slow_attempts=2)
    try:
        loop = asyncio.run(post_once(subscription(receiver.url, max_attempts=5), "unused", None))
    finally:
        receiver.served.close()
    assert loop.counts.delivered == 1
    assert loop.counts.attempts == 3
    assert loop.counts.dead_lettered == 0
    bodies = receiver.attempts["e-1"]
    assert len(bodies) == 3 and len(set(bodies)) == 1


def test_a_webhook_that_never_answers_in_time_dead_letters_the_change(
    kafka_bootstrap, fresh_topics
):
    topics = fresh_topics({"dead-letters": 1})
    receiver = SlowReceiver(slow_attempts=100)
    try:
        loop = asyncio.run(
            post_once(
                subscription(receiver.url, max_attempts=3), topics["dead-letters"], kafka_bootstrap
            )
        )
    finally:
        receiver.served.close()
    assert (loop.counts.delivered, loop.counts.attempts, loop.counts.dead_lettered) == (0, 3, 1)
    consumer = KafkaConsumer(
        topics["dead-letters"], bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    try:
        polled = consumer.poll(timeout_ms=10_000, max_records=10)
        letters = [json.loads(m.value) for batch in polled.values() for m in batch]
    finally:
        consumer.close()
    assert len(letters) == 1
    letter = letters[0]
    assert letter["error_kind"] == WEBHOOK_ERROR_KIND
    assert f"no answer within {TIMEOUT:g}s (after 3 attempts)" in letter["error"]
    assert base64.b64decode(letter["payload_base64"]) == change_record("e-1").value
    assert base64.b64decode(letter["key_base64"]) == b"c1"
    assert (letter["source_topic"], letter["source_offset"]) == ("tier-changes", 41)
