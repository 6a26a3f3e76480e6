"""The store contract: what the worker relies on from any state store."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from scoring.engine import Change, Scorer, change_event_id
from scoring.events import PurchaseEvent
from scoring.state import CustomerState
from tierstream.settings import load_scoring_config
from tierstream.stores import (
    Batch,
    FencedError,
    OffsetsMovedError,
    StaleBatchError,
    record_changes,
    shard_for,
)

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


def test_offsets_only_advance_from_where_they_stand(store):
    """A batch names the stored offsets it was built on; built on any others (a batch
    left behind, or redone on a stale view) it is refused, and nothing is written."""
    lease = store.acquire(0)
    store.commit(lease, Batch(offsets={"purchases": 10, "engagements": 3}))
    store.commit(lease, Batch(offsets={"purchases": 12}, expected={"purchases": 10}))
    assert store.offsets(0) == {"purchases": 12, "engagements": 3}
    for stale in (
        Batch(offsets={"purchases": 7}, states=[scored_state("late")]),  # built on nothing
        Batch(offsets={"purchases": 20}, expected={"purchases": 10}, changes=[b"x"]),
    ):
        with pytest.raises(OffsetsMovedError):
            store.commit(lease, stale)
    assert store.offsets(0) == {"purchases": 12, "engagements": 3}
    assert store.load(0, ["late"]) == {} and store.outbox(0, 10) == []
    # A refused batch leaves the lease's next commit free to go through.
    store.commit(lease, Batch(offsets={"purchases": 13}, expected={"purchases": 12}))
    assert store.offsets(0)["purchases"] == 13


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
    later = Batch(
        offsets={"purchases": 6},
        expected={"purchases": 4},
        changes=[b"alice-2"],
        schedule={"alice": None},
    )
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


# ---------------------------------------------------------------- recent history, tallies


def change(customer_id: str, version: int, previous: str | None, new: str, cause="purchase"):
    return Change(
        event_id=change_event_id(customer_id, version),
        customer_id=customer_id,
        version=version,
        previous_tier=previous,
        new_tier=new,
        previous_segment="Lost" if previous else None,
        new_segment="Loyal",
        cause=cause,
        reason="test",
        recency_days=3,
        frequency=2,
        monetary=Decimal("10.00"),
        r=5,
        f=2,
        m=1,
        occurred_at=T0 + timedelta(days=version),
    )


def chain(customer_id: str, versions: range) -> list[Change]:
    tiers = ["C", "B", "A", "VIP"]
    return [
        change(customer_id, v, tiers[(v - 2) % 4] if v > 1 else None, tiers[(v - 1) % 4])
        for v in versions
    ]


def test_history_keeps_the_latest_changes_newest_first(store):
    home = shard_for("alice", store.partitions)
    lease = store.acquire(home)
    first = Batch(states=[scored_state("alice")])
    record_changes(first, chain("alice", range(1, 4)))
    store.commit(lease, first)
    second = Batch()
    record_changes(second, chain("alice", range(4, 8)))
    store.commit(lease, second)
    history = store.history("alice")
    assert [h["version"] for h in history] == [7, 6, 5, 4, 3]  # DEFAULT_HISTORY_LENGTH
    assert [h["version"] for h in store.history("alice", limit=2)] == [7, 6]
    assert history[0] == {
        "event_id": change_event_id("alice", 7),
        "version": 7,
        "occurred_at": (T0 + timedelta(days=7)).isoformat(),
        "cause": "purchase",
        "previous_tier": "B",
        "new_tier": "A",
        "previous_segment": "Lost",
        "new_segment": "Loyal",
    }
    # Consecutive entries chain, as the tier-changes topic does.
    assert all(a["previous_tier"] == b["new_tier"] for a, b in itertools.pairwise(history))
    assert store.history("nobody") == []
    assert store.history("alice", limit=0) == []


def test_lookup_is_get_and_history_together(store):
    home = shard_for("hana", store.partitions)
    batch = Batch(states=[scored_state("hana")])
    record_changes(batch, chain("hana", range(1, 4)))
    store.commit(store.acquire(home), batch)
    assert store.lookup("hana") == (store.get("hana"), store.history("hana"))
    assert store.lookup("hana", limit=1)[1] == store.history("hana", limit=1)
    assert store.lookup("nobody") == (None, [])
    elsewhere = Batch(states=[scored_state("ivan")])  # keyed to another shard
    record_changes(elsewhere, chain("ivan", range(1, 2)))
    store.commit(
        store.acquire((shard_for("ivan", store.partitions) + 1) % store.partitions), elsewhere
    )
    assert store.lookup("ivan") == (scored_state("ivan"), store.history("ivan"))
    assert len(store.lookup("ivan")[1]) == 1


def test_history_is_written_by_the_same_atomic_commit(store):
    old = store.acquire(0)
    new = store.acquire(0)
    fenced = Batch()
    record_changes(fenced, chain("zombie", range(1, 3)))
    with pytest.raises(FencedError):
        store.commit(old, fenced)
    assert store.history("zombie") == [] and store.tallies() == {}
    batch = Batch()
    record_changes(batch, chain("bob", range(1, 3)))
    store.commit(new, batch)
    store.commit(new, batch)  # a retry after a lost reply adds nothing twice
    assert [h["version"] for h in store.history("bob")] == [2, 1]
    assert store.tallies()["change:purchase"] == 2


def test_history_of_a_customer_in_another_shard(store):
    home = shard_for("carol", store.partitions)
    other = (home + 1) % store.partitions
    batch = Batch(states=[scored_state("carol")])
    record_changes(batch, chain("carol", range(1, 2)))
    store.commit(store.acquire(other), batch)
    assert [h["version"] for h in store.history("carol")] == [1]


def test_history_length_is_configurable_and_zero_disables_it(make_store):
    short = make_store(history_length=2)
    batch = Batch()
    record_changes(batch, chain("dave", range(1, 6)))
    short.commit(short.acquire(shard_for("dave", short.partitions)), batch)
    assert [h["version"] for h in short.history("dave", limit=10)] == [5, 4]
    off = make_store(history_length=0)
    batch = Batch()
    record_changes(batch, chain("dave", range(1, 6)))
    off.commit(off.acquire(shard_for("dave", off.partitions)), batch)
    assert off.history("dave") == []
    assert off.tallies()["change:purchase"] == 5  # totals do not depend on the history


def test_tallies_add_up_over_commits_and_shards(store):
    for shard, customer in [(0, "erin"), (1, "frank"), (1, "grace")]:
        batch = Batch()
        record_changes(
            batch,
            [change(customer, 1, None, "C"), change(customer, 2, "C", "B", "inactivity")],
            Counter(
                {"applied": 3, "duplicate": 1, "already_applied": 7, "dead_letter:bad_json": 2}
            ),
        )
        store.commit(store.acquire(shard), batch)
    assert store.tallies() == {
        "applied": 9,
        "duplicate": 3,
        "dead_letter:bad_json": 6,
        "change:purchase": 3,
        "change:inactivity": 3,
        'flow:tier:[null,"C"]': 3,
        'flow:tier:["C","B"]': 3,
        'flow:segment:[null,"Loyal"]': 3,
        'flow:segment:["Lost","Loyal"]': 3,
    }


def test_history_and_tallies_of_unusual_customer_ids(store):
    ids = ["ünïcode-客户", "{p1}", "x}:c:y", "a:h:b", "x" * 250]
    lease = store.acquire(0)
    batch = Batch(states=[scored_state(cid) for cid in ids])
    record_changes(batch, [c for cid in ids for c in chain(cid, range(1, 3))])
    store.commit(lease, batch)
    for cid in ids:
        assert [h["version"] for h in store.history(cid)] == [2, 1]
    assert {s.customer_id for s in store.scan()} == set(ids)  # history keys are not states
    assert store.tallies()["change:purchase"] == 2 * len(ids)


def test_ping(store):
    store.ping()


def test_customer_ids_lists_one_shard(store):
    store.commit(store.acquire(1), Batch(states=[scored_state("a*b"), scored_state("c[1]")]))
    store.commit(store.acquire(2), Batch(states=[scored_state("elsewhere")]))
    assert store.customer_ids(1) == ["a*b", "c[1]"]
    assert store.customer_ids(2) == ["elsewhere"]
    assert store.customer_ids(3) == []
