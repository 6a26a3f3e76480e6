"""Erasure through the worker's step and the store's atomic commit, on every store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from scoring.engine import Scorer
from scoring.events import EngagementEvent, PurchaseEvent
from streams.deadletters import RawMessage
from streams.processor import ShardProcessor
from tierstream.clock import WallClock
from tierstream.erasure import ErasureRequest, customer_digest, parse_marker
from tierstream.stores import shard_for
from tierstream.stores.outbox_codec import decode_entry

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
KINDS = {"purchases": PurchaseEvent, "engagements": EngagementEvent, "erasures": ErasureRequest}
SALT = b"test-salt"
VICTIM = "victim-4711"


def purchase(offset: int, customer: str, shard: int, event_id: str | None = None) -> RawMessage:
    body = {
        "event_id": event_id or f"e{offset}-{customer}",
        "customer_id": customer,
        "occurred_at": (NOW - timedelta(hours=1)).isoformat(),
        "amount": "250.00",
        "currency": "USD",
    }
    return RawMessage("purchases", shard, offset, customer.encode(), json.dumps(body).encode())


def erasure(offset: int, customer: str, shard: int, *, suppress: bool = False) -> RawMessage:
    body = {
        "event_id": f"req-{offset}",
        "customer_id": customer,
        "requested_at": NOW.isoformat(),
        "suppress": suppress,
    }
    return RawMessage("erasures", shard, offset, customer.encode(), json.dumps(body).encode())


@pytest.fixture
def step(store, default_config):
    shard = shard_for(VICTIM, store.partitions)
    processor = ShardProcessor(
        store, Scorer(default_config), store.acquire(shard), KINDS, WallClock(NOW), salt=SALT
    )
    return shard, processor


def outbox_values(store, shard: int) -> list[dict]:
    return [json.loads(decode_entry(e)[2]) for e in store.outbox(shard, 1000)]


def test_erasure_removes_everything_and_emits_one_change(store, step):
    shard, processor = step
    other = next(f"o{i}" for i in range(100) if shard_for(f"o{i}", store.partitions) == shard)
    processor.process([purchase(0, VICTIM, shard), purchase(1, other, shard)])
    assert store.get(VICTIM) is not None and store.history(VICTIM)
    result = processor.process([erasure(0, VICTIM, shard)])
    assert result.counts["erased"] == 1
    [change] = result.changes
    assert change.cause == "erasure" and change.new_tier is None and change.previous_tier
    assert store.get(VICTIM) is None and store.history(VICTIM) == []
    assert VICTIM not in store.due(shard, float("inf"), 100)
    assert store.get(other) is not None  # nobody else is touched
    [record] = [json.loads(r) for r in store.audit(shard)]
    assert record["customer_hash"] == customer_digest(SALT, VICTIM)
    assert VICTIM not in json.dumps(record)
    [marker] = store.erased(shard, [customer_digest(SALT, VICTIM)])
    assert parse_marker(marker) == (change.version, False)
    erasures = [v for v in outbox_values(store, shard) if v.get("cause") == "erasure"]
    assert [v["customer_id"] for v in erasures] == [VICTIM]
    assert store.tallies()["change:erasure"] == 1 and store.tallies()["erased"] == 1


def test_later_events_start_a_fresh_state_with_versions_after_the_erasure(store, step):
    shard, processor = step
    processor.process([purchase(0, VICTIM, shard)])
    erased = processor.process([erasure(0, VICTIM, shard)]).changes[0]
    # The same event id again: the remembered ids went with the state, so it counts anew.
    result = processor.process([purchase(1, VICTIM, shard, event_id=f"e0-{VICTIM}")])
    assert result.counts["applied"] == 1
    fresh = store.get(VICTIM)
    assert fresh is not None and fresh.version == erased.version + 1
    assert result.changes[0].version == erased.version + 1  # no event id is reused


def test_suppressed_ids_dead_letter_later_events_without_their_payload(store, step):
    shard, processor = step
    processor.process([purchase(0, VICTIM, shard)])
    processor.process([erasure(0, VICTIM, shard, suppress=True)])
    result = processor.process([purchase(1, VICTIM, shard)])
    assert result.counts["dead_letter:erased"] == 1 and result.counts["applied"] == 0
    [letter] = result.dead_letters
    assert letter.error_kind == "erased" and letter.payload_base64 == "" and not letter.key_base64
    assert store.get(VICTIM) is None
    # A later request without --suppress does not lift the suppression.
    processor.process([erasure(1, VICTIM, shard)])
    again = processor.process([purchase(2, VICTIM, shard)])
    assert again.counts["dead_letter:erased"] == 1


def test_events_around_an_erasure_in_one_batch(store, step):
    shard, processor = step
    result = processor.process(
        [purchase(0, VICTIM, shard), erasure(0, VICTIM, shard), purchase(1, VICTIM, shard)]
    )
    causes = [c.cause for c in result.changes]
    assert causes == ["purchase", "erasure", "purchase"]
    state = store.get(VICTIM)
    assert state is not None and state.version == 3  # the fresh state, after the erasure
    # Only the fresh state's change is in the history: the erased ones went with the key.
    assert [h["version"] for h in store.history(VICTIM)] == [3]


def test_erasing_an_unknown_id_records_only_the_marker(store, step):
    shard, processor = step
    result = processor.process([erasure(0, VICTIM, shard, suppress=True)])
    assert result.changes == [] and result.counts["erased"] == 1
    assert processor.process([purchase(0, VICTIM, shard)]).counts["dead_letter:erased"] == 1


def test_no_redis_key_or_value_holds_the_id_after_the_outbox_is_published(store, step):
    if not hasattr(store, "wipe"):
        pytest.skip("Redis only: scans the keyspace")
    shard, processor = step
    processor.process([purchase(0, VICTIM, shard), purchase(1, VICTIM, shard)])
    placed = store.get(VICTIM)
    assert placed is not None and placed.tier is not None  # a member of its tier's set
    assert VICTIM in store.audience_page("tier", placed.tier, None, 1000)
    processor.process([erasure(0, VICTIM, shard)])
    assert store.audience_size("tier", placed.tier) == 0
    store.outbox(shard, 1000)
    store.ack(processor.lease, len(store.outbox(shard, 1000)))  # published and trimmed
    assert keys_holding(store, VICTIM) == []


def keys_holding(store, customer_id: str) -> list[bytes]:
    """Every key of the store's namespace whose name, field or value contains the id."""
    client = store._client
    needle = customer_id.encode()
    found = []
    for key in client.scan_iter(match=f"*{store.namespace}*".encode(), count=1000):
        kind = client.type(key)
        values: list[bytes] = []
        if kind == b"string":
            values = [client.get(key)]
        elif kind == b"hash":
            values = [b for pair in client.hgetall(key).items() for b in pair]
        elif kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind in (b"zset", b"set"):
            values = client.zrange(key, 0, -1) if kind == b"zset" else client.smembers(key)
        if needle in key or any(needle in v for v in values):
            found.append(key)
    return found


def test_erasure_takes_the_customer_out_of_the_learned_statistics(store, step):
    """With segments learned from the stream, the erasing step also removes the erased
    customer's contribution: the statistics equal those of the other customer alone."""
    from streams.learner import Learner

    shard, processor = step
    processor.learner = Learner(0)
    other = next(f"o{i}" for i in range(100) if shard_for(f"o{i}", store.partitions) == shard)
    processor.process([purchase(0, VICTIM, shard), purchase(1, other, shard)])
    processor.process([erasure(0, VICTIM, shard)])
    learned = {
        name: value
        for name, value in store.tallies().items()
        if name.startswith(("learn:n:", "learn:s:", "learn:q:")) and value
    }

    alone = store.get(other)
    assert alone is not None
    alone.learned = None
    expected: dict[str, int] = {}
    Learner(0).learn(processor.scorer, [alone], expected, 0)
    assert learned == {
        name: value
        for name, value in expected.items()
        if name.startswith(("learn:n:", "learn:s:", "learn:q:")) and value
    }


def test_erasing_a_seed_customer_leaves_no_id_and_no_seed_behind(store, step):
    """Before the first model a shard keeps its first customers' vectors as seeds, named
    by shard and ordinal; erasing a seed customer zeroes its seed in the erasing step."""
    from models.learning import PopulationStats
    from streams.learner import Learner

    shard, processor = step
    processor.learner = Learner(10, shard=shard)
    other = next(f"o{i}" for i in range(100) if shard_for(f"o{i}", store.partitions) == shard)
    processor.process([purchase(0, VICTIM, shard), purchase(1, other, shard)])
    victim = store.get(VICTIM)
    assert victim is not None and victim.learned_seed is not None
    assert victim.learned_seed[0] == 0  # the shard's first seed
    processor.process([erasure(0, VICTIM, shard)])
    seeds = PopulationStats.from_tallies(store.tallies(), len(victim.learned_seed) - 1).seeds
    assert list(seeds) == [(shard, 1)]  # only the other customer's seed stands
    assert store.shard_tally(shard, "learn:seeds") == 1
    assert all(
        value == 0
        for name, value in store.tallies().items()
        if name.startswith(f"learn:seed:{shard}:0:")
    )
    if hasattr(store, "wipe"):  # Redis: no key, field or value names the erased id
        store.ack(processor.lease, len(store.outbox(shard, 1000)))
        assert keys_holding(store, VICTIM) == []
