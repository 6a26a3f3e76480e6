"""The outbox publisher sends contribution updates to the accounts' internal topic."""

from __future__ import annotations

import asyncio
import json

from streams.change_headers import change_headers
from streams.publisher import Publisher
from tests.unit.test_publisher import FakeKafka
from tierstream.stores.outbox_codec import CHANGE_ENTRY, CONTRIBUTION_ENTRY


def test_contribution_entries_go_to_the_internal_topic_keyed_by_account() -> None:
    async def scenario() -> list[tuple[str, bytes | None]]:
        kafka = FakeKafka()
        publisher = Publisher(
            0, kafka, "tier-changes", "dead-letters", contributions="app-account-contributions"
        )
        update = CONTRIBUTION_ENTRY + b"acme\x00" + b'{"account_id":"acme"}'
        change = CHANGE_ENTRY + b"c1\x00" + b'{"customer_id":"c1"}'
        await publisher.publish(0, [change, update])
        return [(topic, key) for topic, key, _, _ in kafka.sent]

    assert asyncio.run(scenario()) == [
        ("tier-changes", b"c1"),
        ("app-account-contributions", b"acme"),
    ]


def test_account_changes_carry_the_account_entity_header() -> None:
    value = json.dumps({"entity": "account", "account_id": "acme", "new_tier": "A"}).encode()
    headers = dict(change_headers(value))
    assert headers["entity"] == b"account" and headers["tier"] == b"A"
    assert dict(change_headers(b'{"customer_id": "c1"}'))["entity"] == b"customer"
