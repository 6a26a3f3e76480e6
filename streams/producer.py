"""Publishing event histories to the input topics (demo, backfill, tests and benchmarks)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kafka import KafkaProducer

from scoring.events import EngagementEvent, InputEvent, PurchaseEvent


def event_json(event: InputEvent) -> bytes:
    """The SPEC JSON of an input event (money as a decimal string: exact)."""
    body: dict[str, Any] = {
        "event_id": event.event_id,
        "customer_id": event.customer_id,
        "occurred_at": event.occurred_at.isoformat(),
    }
    if isinstance(event, PurchaseEvent):
        body |= {"amount": str(event.amount), "currency": event.currency, "kind": event.kind}
        if event.order_id is not None:
            body["order_id"] = event.order_id
        if event.attributes:
            body["attributes"] = event.attributes
    else:
        assert isinstance(event, EngagementEvent)
        body |= {"kind": event.kind, "weight": str(event.weight)}
    if event.account_id is not None:
        body["account_id"] = event.account_id
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def keyed_records(events: Iterable[InputEvent]) -> Iterator[tuple[bool, bytes, bytes]]:
    """(is_purchase, key, value) per event; the key is the customer id, as SPEC requires."""
    for event in events:
        yield isinstance(event, PurchaseEvent), event.customer_id.encode("utf-8"), event_json(event)


def produce(
    bootstrap: str,
    events: Iterable[InputEvent],
    *,
    purchases_topic: str,
    engagements_topic: str,
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
    **producer_options: Any,
) -> int:
    """Send events keyed by customer id, in order; ``rate`` caps events per second.

    ``producer_options`` are kafka-python's (``KafkaSettings.client_options()`` for SASL
    and TLS); ``progress`` is told how many were handed to the client, every 1,000.
    """
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        batch_size=256 * 1024,
        compression_type=None,
        **producer_options,
    )
    sent = 0
    started = time.monotonic()
    try:
        for is_purchase, key, value in keyed_records(events):
            topic = purchases_topic if is_purchase else engagements_topic
            producer.send(topic, key=key, value=value)
            sent += 1
            if progress is not None and sent % 1000 == 0:
                progress(sent)
            if rate is not None and sent % 100 == 0:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        producer.flush(timeout=120)
        if progress is not None:
            progress(sent)
    finally:
        producer.close(timeout=30)
    return sent
