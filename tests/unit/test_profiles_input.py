"""The customer-profiles topic through the worker's batch step (embedded store): hostile
messages become dead letters with one reason, updates re-score, tombstones and erasures
remove the traits, and the export shows them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from scoring.config import load_config_text
from scoring.engine import Scorer
from scoring.events import EngagementEvent, PurchaseEvent
from scoring.profiles import ProfileUpdate
from streams.deadletters import RawMessage
from streams.processor import ShardProcessor
from tests.unit.test_processor import NOW
from tests.unit.test_processor import purchase as processor_purchase
from tierstream.clock import WallClock
from tierstream.erasure import ErasureRequest
from tierstream.personal_data import customer_export
from tierstream.stores import MemoryStore
from tierstream.stores.outbox_codec import decode_entry

B2B = Path(__file__).resolve().parents[2] / "configs" / "b2b-traits.yaml"
KINDS = {
    "purchases": PurchaseEvent,
    "engagements": EngagementEvent,
    "erasures": ErasureRequest,
    "profiles": ProfileUpdate,
}
RICH = {"referrals": 5, "pays_on_time": True, "fees": 25000, "strategic_fit": 9}


def purchase(offset: int, customer: str = "c1") -> RawMessage:
    return processor_purchase(offset, customer, amount="6000")


def profile(offset: int, value: object, key: bytes | None = b"c1") -> RawMessage:
    raw = value if isinstance(value, bytes) or value is None else json.dumps(value).encode()
    return RawMessage("profiles", 0, offset, key, raw)


def update(traits: object, at: datetime = NOW - timedelta(minutes=5)) -> dict[str, object]:
    return {"customer_id": "c1", "traits": traits, "updated_at": at.isoformat()}


@pytest.fixture
def processor() -> ShardProcessor:
    store = MemoryStore(partitions=1)
    scorer = Scorer(load_config_text(B2B.read_text()))
    return ShardProcessor(store, scorer, store.acquire(0), KINDS, WallClock(NOW))  # type: ignore[arg-type]


def changes(processor: ShardProcessor) -> list[dict[str, object]]:
    entries = processor.store.outbox(0, 100)
    return [json.loads(decode_entry(e)[2]) for e in entries if decode_entry(e)[0] == b"C"]


def test_an_update_moves_the_customer_and_a_redelivery_counts_once(processor) -> None:
    processor.process([purchase(0)])
    result = processor.process([profile(0, update(RICH))])
    assert result.counts["profile:applied"] == 1
    (change,) = result.changes
    assert (change.cause, change.previous_tier, change.new_tier) == ("profile", "Bronze", "Gold")
    assert "traits: referrals 5→4" in change.reason
    again = processor.process([profile(0, update(RICH)), profile(1, update(RICH))])
    assert again.counts["already_applied"] == 1 and again.counts["profile:duplicate"] == 1
    assert not again.changes
    stale = processor.process([profile(2, update({"referrals": 0}, NOW - timedelta(days=1)))])
    assert stale.counts["profile:stale"] == 1 and processor.store.get("c1").tier == "Gold"
    assert processor.store.offsets(0)["profiles"] == 3


def test_a_tombstone_deletes_the_traits(processor) -> None:
    processor.process([purchase(0), profile(0, update(RICH))])
    result = processor.process([profile(1, None)])
    (change,) = result.changes
    assert change.cause == "profile" and change.new_tier == "Bronze"
    state = processor.store.get("c1")
    assert state.traits is None and "tr" not in state.to_dict()


@pytest.mark.parametrize(
    ("message", "kind", "words"),
    [
        (profile(0, update({"a": {"b": 1}})), "invalid_profile", "number, a string or a boolean"),
        (profile(0, update({"a": "x" * 300})), "invalid_profile", "longer than 256"),
        (profile(0, update({f"t{i}": 1 for i in range(65)})), "invalid_profile", "at most 64"),
        (profile(0, update({"Bad Name": 1})), "invalid_profile", "pattern"),
        (
            profile(
                0, b'{"customer_id":"c1","traits":{"a":NaN},"updated_at":"2026-03-10T00:00:00Z"}'
            ),
            "invalid_profile",
            "finite",
        ),
        (profile(0, update({"a": 1e300})), "invalid_profile", "within ±1e15"),
        (profile(0, update({"a": 1}), key=b"c2"), "key_mismatch", "not the customer_id"),
        (profile(0, update({"a": 1}), key=None), "key_mismatch", "not the customer_id"),
        (profile(0, None, key=None), "key_mismatch", "no customer id"),
        (profile(0, {"customer_id": "c1", "traits": {"a": 1}}), "invalid_profile", "updated_at"),
        (profile(0, update({"a": 1}, NOW + timedelta(days=3))), "future_timestamp", "after"),
        (profile(0, b"{not json"), "not_json", ""),
        (profile(0, b"[1, 2]"), "not_object", "JSON object"),
    ],
)
def test_hostile_profiles_are_dead_letters_with_one_reason(
    processor, message: RawMessage, kind: str, words: str
) -> None:
    result = processor.process([message])
    (letter,) = result.dead_letters
    assert letter.error_kind == kind, letter.error
    assert words in letter.error and "\n" not in letter.error
    assert processor.store.offsets(0) == {"profiles": 1}  # consumed, not retried


def test_erasure_removes_the_traits_and_the_export_shows_them_before(processor) -> None:
    processor.process([purchase(0), profile(0, update(RICH))])
    exported = customer_export(processor.store, processor.scorer, "c1")
    assert exported is not None
    assert exported["state"]["traits"] == {
        "fees": "25000",
        "pays_on_time": True,
        "referrals": "5",
        "strategic_fit": "9",
    }
    assert exported["state"]["traits_updated_at"].startswith("2026-03-10T11:55")
    request = {"event_id": "r1", "customer_id": "c1", "requested_at": NOW.isoformat()}
    erase = RawMessage("erasures", 0, 0, b"c1", json.dumps(request | {"suppress": True}).encode())
    assert processor.process([erase]).counts["erased"] == 1
    assert processor.store.get("c1") is None
    assert customer_export(processor.store, processor.scorer, "c1") is None
    # suppressed: a later profile update of the erased customer is not applied either
    (letter,) = processor.process([profile(1, update(RICH))]).dead_letters
    assert letter.error_kind == "erased" and letter.payload_base64 == ""
    assert processor.store.get("c1") is None
