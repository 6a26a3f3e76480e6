"""`produce` tells its progress and sends every event keyed by customer, shifted if asked."""

from __future__ import annotations

import json

from kafka import KafkaConsumer

from scoring.events import InputEvent
from streams.producer import produce
from tests.integration.helpers import FreshTopics
from tierstream.shift import days_to_now, shift_days


def test_progress_is_reported_and_every_event_arrives_keyed_and_shifted(
    kafka_bootstrap: str, fresh_topics: FreshTopics, cdnow_events: list[InputEvent]
) -> None:
    names = fresh_topics({"purchases": 2, "engagements": 1})
    events = cdnow_events[:2500]
    moved = shift_days(events, days_to_now(events))
    seen: list[int] = []
    sent = produce(
        kafka_bootstrap,
        moved,
        purchases_topic=names["purchases"],
        engagements_topic=names["engagements"],
        progress=seen.append,
    )
    assert sent == 2500
    assert seen == [1000, 2000, 2500]
    consumer = KafkaConsumer(
        names["purchases"],
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    try:
        records = list(consumer)
    finally:
        consumer.close()
    assert len(records) == 2500
    by_id = {event.event_id: event for event in moved}
    for record in records:
        body = json.loads(record.value)
        event = by_id[body["event_id"]]
        assert record.key == event.customer_id.encode()
        assert body["occurred_at"] == event.occurred_at.isoformat()
    latest = max(json.loads(r.value)["occurred_at"] for r in records)
    assert latest[:10] == max(e.occurred_at for e in moved).date().isoformat()
