"""The store contract: what the worker relies on from any state store."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from scoring.engine import Scorer
from scoring.events import PurchaseEvent
from scoring.state import CustomerState
from tierstream.settings import load_scoring_config
from tierstream.stores import Batch, FencedError, StaleBatchError, shard_for

T0 = datetime(2025, 5, 1, tzinfo=UTC)


def scored_state(customer_id: str, amount: str = "42.50") -> CustomerState:
    state = CustomerState(customer_id)
    event = PurchaseEvent(
        event_id=f"{customer_id}-1",
        customer_id=customer_id,
        occurred_at=T0,
        amount=Decimal(amount),
        currency="USD",
    )
    Scorer(load_scoring_config(None)).apply(state, event, T0)
    return state


def test_commit_then_load_round_trips_states(store):
    lease = store.acquire(1)
    states = [scored_state("alice"), scored_state("bob", "7.10")]
    store.commit(lease, Batch(offsets={"purchases": 10}, states=states))
    loaded = store.load(1, ["alice", "bob", "nobody"])
    assert set(loaded) == {"alice", "bob"}
    assert loaded["alice"] == states[0] and loaded["bob"] == states[1]
    assert store.offsets(1) == {"purchases": 10}
    assert store.offsets(2) == {}


def test_loaded_states_are_copies(store):
    lease = store.acquire(0)
    store.commit(lease, Batch(states=[scored_state("alice")]))
    loaded = store.load(0, ["alice"])["alice"]
    loaded.version = 99
    assert store.load(0, ["alice"])["alice"].version != 99


def test_offsets_never_move_back(store):
    lease = store.acquire(0)
    store.commit(lease, Batch(offsets={"purchases": 10, "engagements": 3}))
    store.commit(lease, Batch(offsets={"purchases": 7}))
    assert store.offsets(0) == {"purchases": 10, "engagements": 3}


def test_acquire_fences_the_previous_owner(store):
    old = store.acquire(2)
    new = store.acquire(2)
    with pytest.raises(FencedError):
        store.commit(old, Batch(offsets={"purchases": 5}, states=[scored_state("zombie")]))
    assert store.load(2, ["zombie"]) == {} and store.offsets(2) == {}
    store.commit(new, Batch(offsets={"purchases": 5}))
    assert store.offsets(2) == {"purchases": 5}
    with pytest.raises(FencedError):
        store.ack(old, 1)


def test_committing_an_applied_batch_again_is_a_no_op(store):
    """What a worker does when a commit's reply was lost: commit the same batch again."""
    lease = store.acquire(1)
    batch = Batch(
        offsets={"purchases": 4},
        states=[scored_state("alice")],
        changes=[b"alice-1"],
        schedule={"alice": 500.0},
    )
    store.commit(lease, batch)
    store.commit(lease, batch)
    assert store.outbox(1, 10) == [b"alice-1"]
    assert store.offsets(1) == {"purchases": 4}
    assert store.due(1, 1000.0, 10) == ["alice"]
    later = Batch(offsets={"purchases": 6}, changes=[b"alice-2"], schedule={"alice": None})
    store.commit(lease, later)
    store.commit(lease, later)
    assert store.outbox(1, 10) == [b"alice-1", b"alice-2"]
    # An older batch again cannot be told apart from new work: refused, nothing written.
    with pytest.raises(StaleBatchError):
        store.commit(lease, batch)
    assert store.outbox(1, 10) == [b"alice-1", b"alice-2"] and store.due(1, 1000.0, 10) == []


def test_a_batch_belongs_to_the_lease_that_first_committed_it(store):
    old = store.acquire(0)
    batch = Batch(changes=[b"x"])
    store.commit(old, batch)
    new = store.acquire(0)
    # Built on state read under the old lease: the new owner must rebuild it.
    with pytest.raises(StaleBatchError):
        store.commit(new, batch)
    assert store.outbox(0, 10) == [b"x"]
    store.commit(new, Batch(changes=[b"y"]))  # a new lease numbers its commits afresh
    assert store.outbox(0, 10) == [b"x", b"y"]


def test_outbox_keeps_order_until_acknowledged(store):
    lease = store.acquire(3)
    store.commit(lease, Batch(changes=[b"a", b"b"]))
    store.commit(lease, Batch(changes=[b"c"]))
    assert store.outbox(3, 10) == [b"a", b"b", b"c"]
    assert store.outbox(3, 2) == [b"a", b"b"]
    store.ack(lease, 2)
    assert store.outbox(3, 10) == [b"c"]
    assert store.outbox(0, 10) == []


def test_schedule_returns_due_customers_earliest_first(store):
    lease = store.acquire(0)
    store.commit(lease, Batch(schedule={"a": 300.0, "b": 100.0, "c": 200.0, "d": 900.0}))
    assert store.due(0, 250.0, 10) == ["b", "c"]
    assert store.due(0, 1000.0, 2) == ["b", "c"]
    store.commit(lease, Batch(schedule={"b": None, "c": 950.0}))
    assert store.due(0, 1000.0, 10) == ["a", "d", "c"]


def test_get_finds_a_customer_in_any_shard(store):
    home = shard_for("carol", store.partitions)
    other = (home + 1) % store.partitions
    store.commit(store.acquire(home), Batch(states=[scored_state("carol")]))
    store.commit(store.acquire(other), Batch(states=[scored_state("dave")]))
    assert store.get("carol") == scored_state("carol")
    assert store.get("dave") == scored_state("dave")
    assert store.get("nobody") is None
    assert {s.customer_id for s in store.scan()} == {"carol", "dave"}


def test_meta_values(store):
    assert store.get_meta("thresholds") is None
    store.set_meta("thresholds", b'{"version": 1}')
    assert store.get_meta("thresholds") == b'{"version": 1}'


def test_unusual_customer_ids(store):
    lease = store.acquire(0)
    ids = ["ünïcode-客户", "with space", "{braces}", "a:b:c", "x" * 250, "}{", "{p1}"]
    store.commit(
        lease,
        Batch(states=[scored_state(cid) for cid in ids], schedule=dict.fromkeys(ids, 10.0)),
    )
    loaded = store.load(0, ids)
    assert set(loaded) == set(ids)
    assert all(loaded[cid] == scored_state(cid) for cid in ids)
    assert sorted(store.due(0, 10.0, 100)) == sorted(ids)
    assert {s.customer_id for s in store.scan()} == set(ids)
    assert store.get("{p1}") == scored_state("{p1}")


def test_shard_for_matches_kafka_default_partitioner():
    from kafka.partitioner.default import murmur2  # kafka-python's port of the Java client's

    for key in ["customer-1", "", "a", "abc", "abcd", "ünïcode-客户", "00001"]:
        expected = (murmur2(key.encode()) & 0x7FFFFFFF) % 12
        assert shard_for(key, 12) == expected
