"""Audience memberships: kept by the same atomic commit as the states (every backend)."""

from __future__ import annotations

from collections import defaultdict

from tierstream.audiences import differences, mark_if_fresh
from tierstream.erasure import Erasure
from tierstream.stores import Batch, shard_for
from tierstream.stores.base import (
    AUDIENCE_KINDS,
    AUDIENCES_META,
    memberships_of,
    placement_of,
)
from tierstream.stores.commit_recipe import record_memberships

from .test_contract import scored_state

# Ids that exercise key building and byte ordering: hash-tag and glob characters, the
# key separators, non-ASCII text.
IDS = ["a", "b}:m:tier:x", "{ns:p0}", "c:*?[x]", "zé", "日本", "0", "A b"]


def _commit(store, shard, states, before, erased=()):
    batch = Batch(states=states)
    batch.erasures = [Erasure(cid, f"d{cid}", "1", b"{}") for cid in erased]
    record_memberships(batch, before, erased)
    store.commit(store.acquire(shard), batch)
    return batch


def _place(state, tier, segment=None, behaviour=None):
    state.tier, state.segment = tier, segment
    state.behaviour = None if behaviour is None else (1, behaviour)
    return state


def _scan_audiences(store):
    """(kind, name) -> sorted members, computed from the stored states."""
    expected = defaultdict(list)
    for state in store.scan():
        for audience in memberships_of(state):
            expected[audience].append(state.customer_id)
    return {audience: sorted(ids, key=str.encode) for audience, ids in expected.items()}


def _all_members(store, kind, name, page=3):
    found, after = [], None
    while ids := store.audience_page(kind, name, after, page):
        found += ids
        after = ids[-1]
    return found


def _check_equal_to_scan(store):
    expected = _scan_audiences(store)
    for kind in AUDIENCE_KINDS:
        names = {name: n for (k, name), ids in expected.items() if k == kind for n in [len(ids)]}
        assert store.audience_names(kind) == names
        for name, size in names.items():
            assert store.audience_size(kind, name) == size
            assert _all_members(store, kind, name) == expected[(kind, name)]


def test_memberships_follow_states_moves_and_erasures(store):
    by_shard = defaultdict(list)
    for cid in IDS:
        by_shard[shard_for(cid, store.partitions)].append(cid)
    for shard, ids in by_shard.items():
        states = [_place(scored_state(cid), "Gold", "Loyal", "Big spenders") for cid in ids]
        _commit(store, shard, states, {})
    assert store.audience_size("tier", "Gold") == len(IDS)
    assert _all_members(store, "tier", "Gold") == sorted(IDS, key=str.encode)
    _check_equal_to_scan(store)

    # Move some, unplace one, erase one, and erase-then-recreate one, shard by shard.
    for shard, ids in by_shard.items():
        loaded = store.load(shard, ids)
        before = {cid: placement_of(s) for cid, s in loaded.items()}
        first, rest = ids[0], ids[1:]
        states = [_place(loaded[first], "Silver", "Loyal")]
        erased = []
        if rest:
            erased.append(rest[0])  # erased, no fresh state
        if len(rest) > 1:
            erased.append(rest[1])  # erased, then a fresh state in the same batch
            states.append(_place(scored_state(rest[1]), "Bronze"))
        _commit(store, shard, states, before, erased)
    _check_equal_to_scan(store)
    store.set_meta(AUDIENCES_META, b"1")  # written by membership-keeping commits only
    assert differences(store) == []  # the running sizes and customer count too
    assert store.audience_size("tier", "Nowhere") == 0
    assert store.audience_page("tier", "Nowhere", None, 10) == []


def test_an_unchanged_placement_writes_no_membership(store):
    shard = shard_for("a", store.partitions)
    _commit(store, shard, [_place(scored_state("a"), "Gold")], {})
    loaded = store.load(shard, ["a"])
    batch = _commit(store, shard, [loaded["a"]], {"a": placement_of(loaded["a"])})
    assert batch.memberships == {}
    assert store.audience_size("tier", "Gold") == 1


def test_rebuild_recomputes_sets_from_the_states(store):
    for cid in IDS:
        shard = shard_for(cid, store.partitions)
        batch = Batch(states=[_place(scored_state(cid), "Gold", "Loyal")])  # no memberships
        store.commit(store.acquire(shard), batch)
    assert store.audience_names("tier") == {}
    assert mark_if_fresh(store) is False  # it holds customers: only a rebuild marks it
    assert store.rebuild_audiences() == len(IDS)
    _check_equal_to_scan(store)
    assert store.get_meta(AUDIENCES_META) and differences(store) == []
    assert store.rebuild_audiences() == len(IDS)  # again: the same sets
    _check_equal_to_scan(store)


def test_an_empty_store_is_marked_as_keeping_sizes(store):
    assert mark_if_fresh(store) is True
    assert mark_if_fresh(store) is False  # once
    assert store.get_meta(AUDIENCES_META)
