"""The worker's batch step on the embedded store (the Kafka/Redis path is in tests/integration)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from scoring.engine import Scorer
from scoring.events import DeadLetter, EngagementEvent, PurchaseEvent
from streams.deadletters import RawMessage
from streams.processor import ShardProcessor
from tierstream.clock import EventClock, WallClock
from tierstream.stores import FencedError, MemoryStore
from tierstream.stores.outbox_codec import CHANGE_ENTRY, DEAD_LETTER_ENTRY, decode_entry

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
KINDS = {"purchases": PurchaseEvent, "engagements": EngagementEvent}


def purchase(offset: int, customer: str = "c1", **patch) -> RawMessage:
    body = {
        "event_id": f"e{offset}",
        "customer_id": customer,
        "occurred_at": (NOW - timedelta(hours=1)).isoformat(),
        "amount": "25.00",
        "currency": "USD",
    } | patch
    return RawMessage("purchases", 0, offset, customer.encode(), json.dumps(body).encode())


@pytest.fixture
def processor(default_config):
    store = MemoryStore(partitions=1)
    return ShardProcessor(store, Scorer(default_config), store.acquire(0), KINDS, WallClock(NOW))


def test_valid_events_are_applied_and_changes_queued(processor):
    result = processor.process([purchase(0), purchase(1, "c2")])
    assert result.counts["applied"] == 2 and len(result.changes) == 2
    entries = processor.store.outbox(0, 10)
    assert [decode_entry(e)[0] for e in entries] == [CHANGE_ENTRY, CHANGE_ENTRY]
    change = json.loads(decode_entry(entries[0])[2])
    assert change["customer_id"] == "c1" and change["cause"] == "purchase"
    assert processor.store.offsets(0) == {"purchases": 2}
    assert processor.store.due(0, (NOW + timedelta(days=400)).timestamp(), 10) == ["c1", "c2"]


def test_redelivered_messages_are_skipped_by_offset(processor):
    processor.process([purchase(0), purchase(1)])
    again = processor.process([purchase(0), purchase(1), purchase(2)])
    assert again.counts["already_applied"] == 2 and again.counts["applied"] == 1
    assert processor.store.get("c1").days[next(iter(processor.store.get("c1").days))].purchases == 3


def test_producer_duplicates_count_once(processor):
    result = processor.process([purchase(0), purchase(1, event_id="e0")])
    assert result.counts["applied"] == 1 and result.counts["duplicate"] == 1


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (RawMessage("purchases", 0, 0, b"c1", b"{nope"), "not_json"),
        (RawMessage("purchases", 0, 0, b"c1", b"\xff\xfe"), "not_utf8"),
        (RawMessage("purchases", 0, 0, b"c1", b"[1, 2]"), "not_object"),
        (RawMessage("purchases", 0, 0, b"c1", None), "empty"),
        (RawMessage("purchases", 0, 0, b"c1", b" " * 70_000), "oversized"),
        (purchase(0, amount="-3"), "invalid_event"),
        (purchase(0, occurred_at="2026-03-10T10:00:00"), "invalid_event"),
        (purchase(0, currency="JPY"), "unknown_currency"),
        (purchase(0, occurred_at="2026-04-10T10:00:00+00:00"), "future_timestamp"),
        (RawMessage("purchases", 0, 0, b"other", purchase(0).value), "key_mismatch"),
    ],
)
def test_malformed_messages_become_dead_letters(processor, message, kind):
    result = processor.process([message, purchase(1)])
    assert result.counts[f"dead_letter:{kind}"] == 1 and result.counts["applied"] == 1
    (letter,) = result.dead_letters
    assert letter.error_kind == kind and letter.source_offset == 0
    entries = processor.store.outbox(0, 10)
    assert decode_entry(entries[0])[0] == DEAD_LETTER_ENTRY
    DeadLetter.model_validate_json(decode_entry(entries[0])[2])
    assert processor.store.offsets(0) == {"purchases": 2}  # bad input is not retried forever


def test_timer_step_emits_inactivity_changes(default_config):
    store = MemoryStore(partitions=1)
    clock = WallClock(NOW)
    first = ShardProcessor(store, Scorer(default_config), store.acquire(0), KINDS, clock)
    first.process([purchase(0)])
    later = ShardProcessor(
        store, Scorer(default_config), store.acquire(0), KINDS, WallClock(NOW + timedelta(days=40))
    )
    result = later.advance_due()
    assert result.counts["rescored"] == 1
    assert [c.cause for c in result.changes] == ["inactivity"]
    with pytest.raises(FencedError):
        first.process([purchase(1)])


def test_event_clock_follows_event_time(default_config):
    store = MemoryStore(partitions=1)
    processor = ShardProcessor(store, Scorer(default_config), store.acquire(0), KINDS, EventClock())
    processor.process([purchase(0, occurred_at="1997-01-01T00:00:00+00:00")])
    record = Scorer(default_config).record(store.get("c1"))
    assert record["as_of"] == "1997-01-01"


def test_faust_credentials_from_security_settings(tmp_path):
    import faust

    from tierstream.kafka_settings import faust_credentials

    assert faust_credentials({}) is None
    sasl = faust_credentials(
        {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_plain_username": "u",
            "sasl_plain_password": "p",
        }
    )
    assert isinstance(sasl, faust.SASLCredentials) and sasl.username == "u"
    assert isinstance(faust_credentials({"security_protocol": "SSL"}), faust.SSLCredentials)


def test_under_the_event_clock_no_event_from_the_future_moves_the_clock(default_config):
    """One event dated years ahead would otherwise move the shard's clock for good."""
    store = MemoryStore(partitions=1)
    clock = EventClock()
    processor = ShardProcessor(store, Scorer(default_config), store.acquire(0), KINDS, clock)
    ahead = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    result = processor.process(
        [
            purchase(0, occurred_at="1997-01-01T00:00:00+00:00"),
            purchase(1, occurred_at=ahead, event_id="ahead"),
        ]
    )
    assert result.counts["applied"] == 1 and result.counts["dead_letter:future_timestamp"] == 1
    assert clock.now() == datetime(1997, 1, 1, tzinfo=UTC)
    assert store.offsets(0) == {"purchases": 2}


@pytest.mark.parametrize(
    "moment",
    ["9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+00:00", "1899-12-31T23:59:59+00:00"],
)
def test_dates_at_the_ends_of_the_calendar_are_dead_letters(default_config, moment):
    store = MemoryStore(partitions=1)
    processor = ShardProcessor(store, Scorer(default_config), store.acquire(0), KINDS, EventClock())
    result = processor.process([purchase(0, occurred_at=moment), purchase(1)])
    assert result.counts["dead_letter:invalid_event"] == 1 and result.counts["applied"] == 1
    letter = json.loads(decode_entry(store.outbox(0, 10)[0])[2])
    assert "occurred_at" in letter["error"]


def test_audience_sets_follow_applies_timer_steps_and_erasures(default_config):
    """After every kind of step the membership sets equal a scan of the states."""
    from tierstream.audiences import differences
    from tierstream.erasure import ErasureRequest

    kinds = KINDS | {"erasures": ErasureRequest}

    def erase(offset: int, customer: str) -> RawMessage:
        body = {"event_id": f"r{offset}", "customer_id": customer, "requested_at": NOW.isoformat()}
        return RawMessage("erasures", 0, offset, customer.encode(), json.dumps(body).encode())

    store = MemoryStore(partitions=1)
    first = ShardProcessor(store, Scorer(default_config), store.acquire(0), kinds, WallClock(NOW))
    amounts = ["5.00", "40.00", "400.00", "4000.00"]
    first.process([purchase(k, f"c{k}", amount=amount) for k, amount in enumerate(amounts)])
    assert differences(store) == [] and len(store.audience_names("tier")) > 1
    tiers_before = store.audience_names("tier")
    first.process([purchase(4, "c0", amount="9000.00", event_id="big")])  # c0 moves up
    assert differences(store) == [] and store.audience_names("tier") != tiers_before
    # c1 erased; c2 erased and back in the same batch
    first.process([erase(0, "c1"), erase(1, "c2"), purchase(5, "c2", event_id="again")])
    assert differences(store) == []
    names = store.audience_names("tier")
    assert sum(names.values()) == 3 and "c1" not in {
        cid for name in names for cid in store.audience_page("tier", name, None, 10)
    }
    later = ShardProcessor(
        store, Scorer(default_config), store.acquire(0), kinds, WallClock(NOW + timedelta(days=400))
    )
    assert later.advance_due().counts["rescored"] == 3  # inactivity moves every tier
    assert differences(store) == []
