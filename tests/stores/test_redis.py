"""What the Redis store promises beyond the contract: Cluster-safe keys, retry safety."""

from __future__ import annotations

import pytest
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from tests.stores.test_contract import scored_state
from tierstream.stores import Batch, FencedError, shard_for
from tierstream.stores.redis import RedisStore

pytestmark = pytest.mark.integration

PARTITIONS = 4
ODD_IDS = ["{p1}", "}{", "{", "}", "a{b}c", "{x}:c:{y}", "ünïcode-客户", "with space", "a:b"]


@pytest.fixture
def make_store(redis_url: str, request: pytest.FixtureRequest):
    made: list[RedisStore] = []

    def make(namespace: str = "tr", **options) -> RedisStore:
        store = RedisStore(
            redis_url, partitions=PARTITIONS, namespace=f"{namespace}{id(request)}", **options
        )
        store.wipe()
        made.append(store)
        return store

    yield make
    for store in made:
        store.wipe()
        store.close()


@pytest.fixture
def raw(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def lose_next_reply(store: RedisStore, monkeypatch: pytest.MonkeyPatch, command: str) -> list[int]:
    """The next ``command`` runs on the server, then its reply is lost (a connection drop).

    Patches the redis-py step that its Retry repeats, so the client's own retry (or the
    caller, when the retry gives up) sends the command again. Returns the replies of
    ``command`` the server sent.
    """
    client = store._client
    send = client._send_command_parse_response
    calls: list[int] = []

    def flaky(conn, command_name, *args, **options):
        response = send(conn, command_name, *args, **options)
        if command_name == command:
            calls.append(1)
            if len(calls) == 1:
                raise redis.ConnectionError("simulated: reply lost after the command ran")
        return response

    monkeypatch.setattr(client, "_send_command_parse_response", flaky)
    return calls


def test_every_key_of_a_shard_has_the_shard_slot(make_store, raw):
    """One commit touches keys of one Cluster slot, whatever the customer ids contain."""
    store = make_store()
    for shard in range(PARTITIONS):
        lease = store.acquire(shard)
        store.commit(
            lease,
            Batch(
                offsets={"purchases": 1},
                states=[scored_state(cid) for cid in ODD_IDS],
                changes=[b"change"],
                schedule=dict.fromkeys(ODD_IDS, 100.0),
            ),
        )
    slots = {shard: key_slot(store.meta_key(shard)) for shard in range(PARTITIONS)}
    assert len(set(slots.values())) == PARTITIONS  # the shards spread over the cluster
    for shard in range(PARTITIONS):
        keys = list(raw.scan_iter(match=b"{" + store.namespace.encode() + b":p%d}*" % shard))
        assert len(keys) == len(ODD_IDS) + 3  # states, meta, due, outbox
        assert {key_slot(key) for key in keys} == {slots[shard]}
    assert {s.customer_id for s in store.scan()} == set(ODD_IDS)


def test_commit_whose_reply_was_lost_is_applied_once(make_store, monkeypatch):
    store = make_store()
    lease = store.acquire(2)
    calls = lose_next_reply(store, monkeypatch, "EVALSHA")
    store.commit(
        lease,
        Batch(offsets={"purchases": 3}, states=[scored_state("eve")], changes=[b"eve-1"]),
    )
    assert len(calls) == 2  # the client's retry sent it again
    assert store.outbox(2, 10) == [b"eve-1"]
    assert store.load(2, ["eve"]) == {"eve": scored_state("eve")}


def test_caller_can_commit_again_when_the_retries_give_up(make_store, monkeypatch):
    store = make_store(retry=Retry(NoBackoff(), 0))
    lease = store.acquire(0)
    batch = Batch(offsets={"purchases": 3}, changes=[b"a", b"b"], schedule={"x": 5.0})
    lose_next_reply(store, monkeypatch, "EVALSHA")
    with pytest.raises(redis.ConnectionError):
        store.commit(lease, batch)
    store.commit(lease, batch)  # what the worker does with an outcome it does not know
    assert store.outbox(0, 10) == [b"a", b"b"] and store.due(0, 10.0, 10) == ["x"]


def test_ack_whose_reply_was_lost_drops_each_entry_once(make_store, monkeypatch):
    store = make_store(retry=Retry(NoBackoff(), 0))
    lease = store.acquire(1)
    store.commit(lease, Batch(changes=[b"a", b"b", b"c", b"d"]))
    assert store.outbox(1, 2) == [b"a", b"b"]
    lose_next_reply(store, monkeypatch, "EVALSHA")
    with pytest.raises(redis.ConnectionError):
        store.ack(lease, 2)
    store.ack(lease, 2)  # again: the outbox head is already there
    assert store.outbox(1, 10) == [b"c", b"d"]
    store.ack(lease, 1)  # consecutive acks without a read in between still add up
    store.ack(lease, 1)
    assert store.outbox(1, 10) == []


def test_fenced_error_names_the_current_epoch(make_store):
    store = make_store()
    old = store.acquire(3)
    store.acquire(3)
    newest = store.acquire(3)
    with pytest.raises(FencedError) as caught:
        store.commit(old, Batch())
    assert caught.value.current == newest.epoch


def test_large_batches_and_loads(make_store):
    """More items than one Lua unpack() or one MGET chunk takes."""
    store = make_store()
    lease = store.acquire(0)
    ids = [f"c{i}" for i in range(1200)]
    template = scored_state("template")
    states = []
    for cid in ids:
        state = template.copy()
        state.customer_id = cid
        states.append(state)
    changes = [f"change-{i}".encode() for i in range(2500)]
    schedule = {cid: float(i) for i, cid in enumerate(ids)}
    store.commit(lease, Batch(states=states, changes=changes, schedule=schedule))
    assert len(store.load(0, ids)) == len(ids)
    assert store.outbox(0, 5000) == changes
    assert store.due(0, 1e9, 5000) == ids
    store.commit(lease, Batch(schedule=dict.fromkeys(ids, None)))
    assert store.due(0, 1e9, 10) == []
    assert sum(1 for _ in store.scan()) == len(ids)


def test_get_looks_in_the_home_shard_first_then_the_others(make_store):
    store = make_store()
    home = shard_for("frank", PARTITIONS)
    stray = (home + 2) % PARTITIONS
    store.commit(store.acquire(stray), Batch(states=[scored_state("frank")]))
    assert store.get("frank") == scored_state("frank")


def test_wipe_leaves_other_namespaces_alone(make_store):
    ours, theirs = make_store("a"), make_store("b")
    for store in (ours, theirs):
        store.commit(store.acquire(0), Batch(states=[scored_state("gina")], changes=[b"x"]))
        store.set_meta("model", b"v1")
    assert ours.wipe() == 4  # state, meta, outbox, global meta (no schedule: no due key)
    assert ours.get("gina") is None and ours.get_meta("model") is None
    assert ours.offsets(0) == {}
    assert theirs.get("gina") == scored_state("gina") and theirs.get_meta("model") == b"v1"


@pytest.mark.parametrize("namespace", ["", "a{b}", "a*", "x" * 65, "a:b"])
def test_namespace_must_not_change_keys_or_patterns(redis_url, namespace):
    with pytest.raises(ValueError, match="namespace"):
        RedisStore(redis_url, partitions=1, namespace=namespace)


def test_a_malformed_commit_writes_nothing(make_store, raw):
    """The commit script checks every argument before its first write (all or nothing)."""
    from tierstream.stores.redis import _COMMIT, commit_request

    store = make_store()
    lease = store.acquire(0)
    batch = Batch(offsets={"purchases": 3}, states=[scored_state("eve")], changes=[b"eve-1"])
    keys, args = commit_request(store, lease, batch, None)
    script = raw.register_script(_COMMIT)
    for broken in (args[:-1], [*args, b"extra"], [*args[:3], b"two", *args[4:]]):
        code, problem, _ = script(keys=keys, args=broken)
        assert code == -4 and b"malformed commit" in problem
    assert store.offsets(0) == {} and store.load(0, ["eve"]) == {}
    assert store.outbox(0, 10) == [] and raw.hget(store.meta_key(0), "seq") is None
    # The well-formed commit then goes through, once.
    store.commit(lease, batch)
    assert store.offsets(0) == {"purchases": 3} and store.outbox(0, 10) == [b"eve-1"]


def test_over_maxmemory_a_commit_is_refused_whole(make_store, raw):
    """At maxmemory (noeviction) Redis refuses the script before it runs: no partial commit
    that a retry could take for an applied one."""
    store = make_store()
    lease = store.acquire(0)
    store.commit(lease, Batch(offsets={"purchases": 1}, states=[scored_state("first")]))
    before = raw.config_get("maxmemory*")
    try:
        raw.config_set("maxmemory-policy", "noeviction")
        raw.config_set("maxmemory", max(1, int(raw.info("memory")["used_memory"]) // 2))
        batch = Batch(
            offsets={"purchases": 5},
            expected={"purchases": 1},
            states=[scored_state("second")],
            changes=[b"second-1"],
        )
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            store.commit(lease, batch)
    finally:
        raw.config_set("maxmemory", before["maxmemory"])
        raw.config_set("maxmemory-policy", before["maxmemory-policy"])
    assert store.offsets(0) == {"purchases": 1} and store.load(0, ["second"]) == {}
    assert store.outbox(0, 10) == []
    store.commit(lease, batch)  # the same batch, once memory is back: applied once
    assert store.offsets(0) == {"purchases": 5} and store.outbox(0, 10) == [b"second-1"]
