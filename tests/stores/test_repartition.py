"""Moving the stored state from 4 to 12 partitions (tierstream/repartition.py), on CDNOW.

Every CDNOW customer's state, recent history and schedule entry (on the single Redis, the
customers below 03000) is committed to 4 shards as the worker would, with running totals
and undelivered outbox entries; the move to 12 shards must leave every customer
byte-identical in its new home shard, deliver the outbox in order, keep the totals, and
survive being interrupted. Run against the single Redis and the Redis Cluster (where old
and new shard are on different slots and nodes).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime

import pytest

from scoring.engine import Change, Scorer
from tests.cdnow import cdnow_history
from tierstream.audiences import differences
from tierstream.repartition import (
    LAYOUT_META,
    RepartitionError,
    customers,
    fingerprint,
    pending,
    plan,
    repartition,
)
from tierstream.replay import ReplayResult, ReplayStats, replay
from tierstream.stores import Batch, record_changes, shard_for
from tierstream.stores.base import AUDIENCE_KINDS
from tierstream.stores.commit_recipe import record_memberships
from tierstream.stores.outbox_codec import encode_change
from tierstream.stores.redis import RedisStore

pytestmark = pytest.mark.integration

SOURCE, TARGET = 4, 12
AS_OF = datetime(1998, 7, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def cdnow(default_config) -> tuple[ReplayResult, dict[str, list[Change]]]:
    events = list(cdnow_history())
    changes: dict[str, list[Change]] = defaultdict(list)
    result = replay(
        events,
        Scorer(default_config),
        as_of=AS_OF,
        emit=lambda change: changes[change.customer_id].append(change),
        stats=ReplayStats(),
    )
    return result, changes


@pytest.fixture(scope="module")
def cdnow_part(cdnow) -> tuple[ReplayResult, dict[str, list[Change]]]:
    """The customers below 03000 (about 3,000) of the same replay."""
    result, changes = cdnow
    states = {cid: state for cid, state in result.states.items() if cid < "03000"}
    return ReplayResult(states, result.scorer, result.stats, result.as_of), changes


@pytest.fixture(params=["redis_url", "redis_cluster_url"])
def url(request) -> str:
    return request.getfixturevalue(request.param)


@pytest.fixture
def stores(url, request):
    """(store over 12 shards, the same namespace seen with 4), wiped before and after."""
    namespace = f"rp{id(request)}"
    wide = RedisStore(url, partitions=TARGET, namespace=namespace)
    narrow = RedisStore(url, partitions=SOURCE, namespace=namespace)
    wide.wipe()
    yield wide, narrow
    wide.wipe()
    wide.close()
    narrow.close()


def fill(store: RedisStore, cdnow, outbox_per_shard: int = 30) -> list[bytes]:
    """Commit every CDNOW customer to ``store``'s shards (its partition count) in batches
    of 500, with history, schedule and totals; leave the last changes of each shard
    undelivered in its outbox. Returns those outbox entries."""
    result, changes = cdnow
    by_shard: dict[int, list] = defaultdict(list)
    for state in result.states.values():
        by_shard[shard_for(state.customer_id, store.partitions)].append(state)
    queued: list[bytes] = []
    for shard, group in sorted(by_shard.items()):
        lease = store.acquire(shard)
        for start in range(0, len(group), 500):
            chunk = group[start : start + 500]
            batch = Batch(states=chunk, offsets={"purchases": start + len(chunk)})
            batch.expected = {"purchases": start or None}
            for state in chunk:
                moment = result.scorer.next_rescore_at(state)
                batch.schedule[state.customer_id] = None if moment is None else moment.timestamp()
            chunk_changes = [c for state in chunk for c in changes[state.customer_id]]
            record_changes(batch, chunk_changes, {"applied": len(chunk)})
            record_memberships(batch, {})  # fresh customers: they join their audiences
            if start + 500 >= len(group):  # the shard's last batch: left in the outbox
                batch.changes = [encode_change(c, AS_OF) for c in chunk_changes[-outbox_per_shard:]]
                queued += batch.changes
            store.commit(lease, batch)
    return queued


def snapshot(store: RedisStore) -> dict[str, tuple]:
    """customer -> (shard, state bytes, history entries, schedule score), from raw keys."""
    client = store._client
    found = {}
    for shard, ids in customers(store).items():
        # One pipelined round trip per shard, not three per customer (all of CDNOW on
        # the Cluster was 140,000 round trips for the two snapshots).
        with client.pipeline(transaction=False) as pipe:
            for cid in ids:
                pipe.get(store.state_key(shard, cid))
                pipe.lrange(store.history_key(shard, cid), 0, -1)
                pipe.zscore(store.due_key(shard), cid.encode())
            replies = pipe.execute()
        for index, cid in enumerate(ids):
            found[cid] = (shard, *replies[3 * index : 3 * index + 3])
    return found


def assert_memberships_at_home(store: RedisStore, partitions: int) -> None:
    """The audience sets equal a scan of the states, and every shard's sets hold only
    customers whose home shard it is."""
    assert differences(store) == []
    client = store._client
    for kind in AUDIENCE_KINDS:
        names = store.audience_names(kind)
        for name in names:
            for shard in range(partitions):
                ids = client.zrange(store.members_key(shard, kind, name), 0, -1)
                away = [cid for cid in ids if shard_for(cid.decode(), partitions) != shard]
                assert away == [], (kind, name, shard, away[:3])
    assert store.audience_names("tier")


def test_moving_cdnow_from_4_to_12_partitions_keeps_every_customer(stores, url, cdnow, cdnow_part):
    # All of CDNOW on the Cluster (old and new shard on different slots and nodes), the
    # customers below 03000 on the single Redis: the suite stays lean.
    data = cdnow if "cluster" in url else cdnow_part
    wide, narrow = stores
    queued = fill(narrow, data)
    before = snapshot(narrow)
    assert len(before) == len(data[0].states)
    offsets_before = [narrow.offsets(shard) for shard in range(SOURCE)]
    totals_before = narrow.tallies()
    delivered: list[bytes] = []

    source, resumed = plan(wide, SOURCE, TARGET)
    assert (source, resumed) == (SOURCE, False)
    report = repartition(wide, source, TARGET, lambda shard, entries: delivered.extend(entries))

    after = snapshot(wide)
    assert set(after) == set(before)
    for cid, (shard, *keys) in after.items():
        assert shard == shard_for(cid, TARGET), cid
        assert keys == list(before[cid][1:]), cid
    assert report.customers == len(before)
    assert report.moved == sum(
        1 for cid in before if shard_for(cid, TARGET) != shard_for(cid, SOURCE)
    )
    # The outboxes were delivered, shard by shard in order, and are empty now.
    assert delivered == queued
    assert all(wide.outbox(shard, 1) == [] for shard in range(TARGET))
    # Partition-bound data stays: old shards keep their offsets, new ones start empty.
    assert [wide.offsets(shard) for shard in range(SOURCE)] == offsets_before
    assert all(wide.offsets(shard) == {} for shard in range(SOURCE, TARGET))
    assert wide.tallies() == totals_before
    assert_memberships_at_home(wide, TARGET)
    assert wide.get_meta(LAYOUT_META) == b"12" and pending(wide) is None
    # Lookups find every customer in its home shard now (one GET).
    assert wide.get("00042") is not None
    assert plan(wide, SOURCE, TARGET) == (TARGET, False)  # done: nothing left to do


def test_an_interrupted_move_resumes_and_verifies(stores, cdnow_part):
    wide, narrow = stores
    fill(narrow, cdnow_part, outbox_per_shard=0)
    before = fingerprint(narrow, SOURCE)

    chunks = itertools.count(1)

    def crash(moved: int) -> None:
        if next(chunks) == 3:  # two chunks moved, the third not
            raise ConnectionError("the operator's laptop went to sleep")

    with pytest.raises(ConnectionError):
        repartition(wide, SOURCE, TARGET, lambda shard, entries: None, after_chunk=crash)
    assert pending(wide) is not None
    # Another target while one move is unfinished is refused; the same one resumes.
    with pytest.raises(RepartitionError, match="unfinished"):
        plan(wide, SOURCE, 8)
    source, resumed = plan(wide, SOURCE, TARGET)
    assert (source, resumed) == (SOURCE, True)
    report = repartition(wide, source, TARGET, lambda shard, entries: None, resumed=True)
    assert report.customers == before.customers
    assert fingerprint(wide, TARGET) == before
    assert_memberships_at_home(wide, TARGET)
    assert pending(wide) is None


def test_fewer_partitions_and_a_wrong_source_count_are_refused(stores, cdnow_part):
    wide, narrow = stores
    with pytest.raises(RepartitionError, match="only adds partitions"):
        plan(wide, SOURCE, 2)
    # State laid out for 12 partitions, but the operator says 4: refused before moving.
    fill(wide, cdnow_part, outbox_per_shard=0)
    before = snapshot(wide)
    with pytest.raises(RepartitionError, match="already holds state"):
        repartition(wide, SOURCE, TARGET, lambda shard, entries: None)
    assert snapshot(wide) == before and pending(wide) is None


def test_erasure_markers_reach_every_customers_new_home(stores, cdnow_part):
    """An erased id's marker (keyed by a salted hash, so its new shard is unknown) is
    found in whichever shard the id lives in after the move."""
    from tierstream.erasure import customer_digest, erasure_salt, make_marker

    wide, narrow = stores
    fill(narrow, cdnow_part, outbox_per_shard=0)
    salt = erasure_salt(narrow)
    erased = {cid: v for v, cid in enumerate(["00001", "00002", "00007", "00011"], start=3)}
    for cid, version in erased.items():
        narrow._client.hset(
            narrow.erased_key(shard_for(cid, SOURCE)),
            customer_digest(salt, cid),
            make_marker(version, suppressed=cid == "00007"),
        )
    repartition(wide, SOURCE, TARGET, lambda shard, entries: None)
    for cid, version in erased.items():
        [marker] = wide.erased(shard_for(cid, TARGET), [customer_digest(salt, cid)])
        assert marker is not None, cid
        assert marker.decode() == make_marker(version, suppressed=cid == "00007")
