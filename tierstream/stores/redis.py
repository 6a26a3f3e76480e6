"""The Redis store: state shared by every worker and the API, in a Cluster-safe key layout.

Key layout (docs/state-layout.md explains it and measures it), for namespace ``ns`` and
shard ``p`` (= Kafka input partition):

    {ns:p<p>}:c:<customer id>   string: the customer's state (compact JSON, see _encode)
    {ns:p<p>}:meta              hash: epoch, last commit number, outbox head, o:<topic> offsets
    {ns:p<p>}:due               sorted set: customer id -> next rescore moment (epoch seconds)
    {ns:p<p>}:outbox            list: serialized tier changes not yet published
    {ns:p<p>}:h:<customer id>   list: the customer's latest tier changes, newest first, capped
    {ns:p<p>}:stats             hash: running totals (changes by cause, tier flows, outcomes)
    {ns:p<p>}:m:<kind>:<name>   sorted set (scores 0): the customers of one audience
    ns:meta:<name>              string: global metadata (thresholds, model snapshot, ...)

Every key of one shard starts with the same hash tag ``{ns:p<p>}``. Redis Cluster hashes
only the first ``{...}`` of a key, and the tag comes first, so whatever a customer id
contains (``{``, ``}``, ``:``, unicode) the key stays in its shard's slot, and the one Lua
script that commits a batch touches keys of a single slot, as Cluster requires.

Every call is safe to retry after a lost reply, so one client with redis-py's ``Retry``
serves reads and writes alike: reads and ``set_meta`` are idempotent, a commit carries its
batch's commit number (the script does nothing if that commit is the one it applied last),
``ack`` names the absolute outbox position to trim to, and a repeated ``acquire`` only
bumps the epoch once more.
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from importlib import resources
from typing import Any, Protocol

import redis
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry

from scoring.state import CustomerState
from tierstream.stores.base import (
    AUDIENCES_META,
    CUSTOMERS_TALLY,
    DEFAULT_HISTORY_LENGTH,
    SIZE_TALLY_PREFIX,
    Batch,
    FencedError,
    Lease,
    OffsetsMovedError,
    StaleBatchError,
    home_first,
    memberships_of,
    shard_for,
    size_tally,
    stamp,
)
from tierstream.stores.commit_recipe import decode_history
from tierstream.stores.redis_connect import sync_client
from tierstream.stores.state_codec import decode_state as _decode
from tierstream.stores.state_codec import encode_state as _encode

# Redis runs a commit of 500 states in about 2 ms; waiting 5 s means it is stuck (or
# swapping), not busy, and the worker is better off retrying on a fresh connection.
SOCKET_TIMEOUT = 5.0
# A local or same-zone Redis accepts a connection in well under a second; 2 s leaves room
# for a loaded host without hiding an outage for long.
CONNECT_TIMEOUT = 2.0
# Retries after a connection error or timeout, with exponential backoff (100 ms doubling
# up to 2 s) of which a random half is jitter, so that many workers cut off together do
# not reconnect in lockstep: 2.5 to 5 s of waiting in all, enough to ride out a failover
# or a restart that reloads a small AOF. After that the error reaches the caller (the
# worker pauses and tries again; every call here is safe to repeat).
RETRIES = 6
BACKOFF_BASE = 0.05
BACKOFF_CAP = 2.0

# Keys per MGET/UNLINK and the SCAN COUNT hint: large enough to keep round trips few,
# small enough that one command never blocks Redis for more than a millisecond or so.
CHUNK = 500
SCAN_COUNT = 1000

# Health checks and round-trip timing use their own client without retries: a PING that
# takes longer than this on a local or same-zone Redis means trouble worth reporting now,
# not after the data path's retries (up to ~20 s) have given up.
PING_TIMEOUT = 1.0

# Namespaces become part of every key and of SCAN patterns: no glob or hash-tag syntax.
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# Result codes of the scripts.
_APPLIED, _ALREADY_APPLIED, _FENCED, _STALE, _MOVED, _MALFORMED = 0, 1, -1, -2, -3, -4


def _lua(name: str) -> str:
    """A script of lua/: package data, so that an installed wheel has it too."""
    return resources.files("tierstream.stores").joinpath("lua", name).read_text("utf-8")


# The scripts, each with its KEYS/ARGV layout documented in its header.
_COMMIT = _lua("commit.lua")
_ACK = _lua("ack.lua")


class RedisStore:
    """State in Redis, sharded by Kafka input partition (see the module docstring).

    Synchronous (redis-py with hiredis): the streaming worker calls it from a thread
    executor. Thread-safe: the client keeps a pool of connections.
    """

    def __init__(
        self,
        url: str,
        partitions: int,
        namespace: str = "ts",
        *,
        socket_timeout: float = SOCKET_TIMEOUT,
        socket_connect_timeout: float = CONNECT_TIMEOUT,
        retry: Retry | None = None,
        history_length: int = DEFAULT_HISTORY_LENGTH,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, not {partitions}")
        if history_length < 0:
            raise ValueError(f"history_length must be 0 or more, not {history_length}")
        if not _NAMESPACE.fullmatch(namespace):
            raise ValueError(
                f"namespace {namespace!r}: use 1 to 64 of A-Z a-z 0-9 _ . - "
                "(it becomes part of every key and of the hash tags)"
            )
        self.partitions = partitions
        self.namespace = namespace
        # Tier changes kept per customer; 0 keeps none (and writes no history keys).
        self.history_length = history_length
        self.url = url
        self._probe: redis.Redis[bytes] | None = None
        if retry is None:
            retry = Retry(EqualJitterBackoff(cap=BACKOFF_CAP, base=BACKOFF_BASE), RETRIES)
        # redis.Redis, or redis-py's RedisCluster for a redis+cluster:// URL (redis_connect).
        self._client = sync_client(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
            retry=retry,
            decode_responses=False,
        )
        self._commit = self._client.register_script(_COMMIT)
        self._ack = self._client.register_script(_ACK)
        self._tags = [f"{{{namespace}:p{shard}}}".encode() for shard in range(partitions)]
        # shard -> (epoch, outbox head) as of this store's last outbox() read, so that a
        # repeated ack names the same absolute position (see ack).
        self._heads: dict[int, tuple[int, int]] = {}

    # ------------------------------------------------------------------ keys
    def state_key(self, shard: int, customer_id: str) -> bytes:
        return self._tags[shard] + b":c:" + customer_id.encode("utf-8")

    def meta_key(self, shard: int) -> bytes:
        return self._tags[shard] + b":meta"

    def due_key(self, shard: int) -> bytes:
        return self._tags[shard] + b":due"

    def outbox_key(self, shard: int) -> bytes:
        return self._tags[shard] + b":outbox"

    def history_key(self, shard: int, customer_id: str) -> bytes:
        return self._tags[shard] + b":h:" + customer_id.encode("utf-8")

    def stats_key(self, shard: int) -> bytes:
        return self._tags[shard] + b":stats"

    def members_key(self, shard: int, kind: str, name: str) -> bytes:
        """The sorted set of one audience's customers in one shard (kind: tier, segment,
        behaviour; the name, free text, is the rest of the key)."""
        return self._tags[shard] + b":m:" + kind.encode() + b":" + name.encode("utf-8")

    def erased_key(self, shard: int) -> bytes:
        return self._tags[shard] + b":erased"

    def audit_key(self, shard: int) -> bytes:
        return self._tags[shard] + b":audit"

    def global_key(self, name: str) -> bytes:
        return f"{self.namespace}:meta:{name}".encode()

    # ------------------------------------------------------------- ownership
    def acquire(self, shard: int) -> Lease:
        with self._client.pipeline(transaction=True) as pipe:
            pipe.hincrby(self.meta_key(shard), "epoch", 1)
            # Commit numbers restart with every lease.
            pipe.hdel(self.meta_key(shard), "seq")
            epoch, _ = pipe.execute()
        return Lease(shard, int(epoch))

    def offsets(self, shard: int) -> dict[str, int]:
        return applied_offsets(self._client.hgetall(self.meta_key(shard)))

    # ---------------------------------------------------------------- states
    def load(self, shard: int, customer_ids: Collection[str]) -> dict[str, CustomerState]:
        ids = list(dict.fromkeys(customer_ids))
        if not ids:
            return {}
        keys = [self.state_key(shard, cid) for cid in ids]
        found = zip(ids, self._mget(keys), strict=True)
        return {cid: _decode(cid, data) for cid, data in found if data is not None}

    def commit(self, lease: Lease, batch: Batch) -> None:
        keys, args = commit_request(self, lease, batch, None)
        check_commit_reply(lease, batch, self._commit(keys=keys, args=args))

    def get(self, customer_id: str) -> CustomerState | None:
        data = self._home_first([customer_id], self.state_key, _read_value).get(customer_id)
        return None if data is None else _decode(customer_id, data)

    def get_many(self, customer_ids: Collection[str]) -> dict[str, CustomerState]:
        """The states of ``customer_ids`` that exist, in two round trips at most (see
        ``_home_first``)."""
        found = self._home_first(customer_ids, self.state_key, _read_value)
        return {cid: _decode(cid, data) for cid, data in found.items()}

    def history(
        self, customer_id: str, limit: int = DEFAULT_HISTORY_LENGTH
    ) -> list[dict[str, Any]]:
        if limit <= 0 or self.history_length == 0:
            return []

        def latest(pipe: Any, key: bytes) -> None:
            pipe.lrange(key, 0, limit - 1)

        found = self._home_first([customer_id], self.history_key, latest)
        return [decode_history(customer_id, entry) for entry in found.get(customer_id, [])]

    def lookup(
        self, customer_id: str, limit: int = DEFAULT_HISTORY_LENGTH
    ) -> tuple[CustomerState | None, list[dict[str, Any]]]:
        # The API's hot path: state and history of the home shard in one round trip; the
        # other shards only for a customer that is not there (as get() and history() do).
        home = shard_for(customer_id, self.partitions)
        count = limit if self.history_length else 0
        with self._client.pipeline(transaction=False) as pipe:
            pipe.get(self.state_key(home, customer_id))
            if count > 0:
                pipe.lrange(self.history_key(home, customer_id), 0, count - 1)
            found = pipe.execute()
        if found[0] is None:
            return self.get(customer_id), self.history(customer_id, limit)
        entries = found[1] if count > 0 else []
        history = [decode_history(customer_id, entry) for entry in entries]
        return _decode(customer_id, found[0]), history

    def tallies(self) -> dict[str, int]:
        with self._client.pipeline(transaction=False) as pipe:
            for shard in range(self.partitions):
                pipe.hgetall(self.stats_key(shard))
            per_shard: list[dict[bytes, bytes]] = pipe.execute()
        total: dict[str, int] = defaultdict(int)
        for fields in per_shard:
            for name, value in fields.items():
                total[name.decode("utf-8")] += int(value)
        return dict(total)

    def shard_tally(self, shard: int, name: str) -> int:
        """One running total of one shard (0 if it has none)."""
        return int(self._client.hget(self.stats_key(shard), name) or 0)

    def ping(self) -> None:
        if self._probe is None:
            self._probe = sync_client(
                self.url,
                socket_timeout=PING_TIMEOUT,
                socket_connect_timeout=PING_TIMEOUT,
                retry=Retry(EqualJitterBackoff(), 0),
            )
        self._probe.ping()

    def scan(self) -> Iterator[CustomerState]:
        # One pass over the keyspace for all shards (a pass per shard would read it P
        # times); SCAN may return a key twice while Redis resizes, hence the seen set.
        pattern = f"{{{self.namespace}:p*}}:c:*".encode()
        seen: set[bytes] = set()
        pending: dict[bytes, list[bytes]] = defaultdict(list)
        for key in self._client.scan_iter(match=pattern, count=SCAN_COUNT):
            if key in seen:
                continue
            seen.add(key)
            tag = key[: key.index(b"}") + 1]
            if not key.startswith(b":c:", len(tag)):
                continue  # another key whose customer id holds "}:c:" (say, a history list)
            pending[tag].append(key)
            if len(pending[tag]) >= CHUNK:
                yield from self._fetch(pending.pop(tag))
        for keys in pending.values():
            yield from self._fetch(keys)

    def customer_ids(self, shard: int) -> list[str]:
        """Every customer id stored in one shard (a SCAN of that shard's keys)."""
        prefix = self._tags[shard] + b":c:"
        pattern = _glob_escape(prefix) + b"*"
        ids = {
            key[len(prefix) :] for key in self._client.scan_iter(match=pattern, count=SCAN_COUNT)
        }
        return sorted(key.decode("utf-8") for key in ids)

    # -------------------------------------------------------------- schedule
    def due(self, shard: int, until: float, limit: int) -> list[str]:
        if limit <= 0:
            return []
        members = self._client.zrangebyscore(
            self.due_key(shard), "-inf", _score(until), start=0, num=limit
        )
        return [member.decode("utf-8") for member in members]

    # ---------------------------------------------------------------- outbox
    def outbox(self, shard: int, limit: int) -> list[bytes]:
        if limit <= 0:
            return []
        with self._client.pipeline(transaction=True) as pipe:
            pipe.hmget(self.meta_key(shard), ["epoch", "head"])
            pipe.lrange(self.outbox_key(shard), 0, limit - 1)
            (epoch, head), entries = pipe.execute()
        self._heads[shard] = (int(epoch or 0), int(head or 0))
        return list(entries)

    def ack(self, lease: Lease, count: int) -> None:
        # Trim to an absolute position (head seen by the last outbox() read + count): done
        # again after a lost reply, the same ack finds the position reached and drops
        # nothing more. Without a read under this lease, fall back to head + count.
        seen = self._heads.get(lease.shard)
        target = seen[1] + max(count, 0) if seen and seen[0] == lease.epoch else ""
        keys = [self.meta_key(lease.shard), self.outbox_key(lease.shard)]
        code, value = self._ack(keys=keys, args=[lease.epoch, target, max(count, 0)])
        if code == _FENCED:
            raise FencedError(lease, int(value))
        self._heads[lease.shard] = (lease.epoch, int(value))

    # ------------------------------------------------------------------ meta
    def get_meta(self, name: str) -> bytes | None:
        value: bytes | None = self._client.get(self.global_key(name))
        return value

    def set_meta(self, name: str, value: bytes) -> None:
        self._client.set(self.global_key(name), value)

    def set_meta_if_absent(self, name: str, value: bytes) -> None:
        self._client.set(self.global_key(name), value, nx=True)

    # ------------------------------------------------------------- audiences
    def audience_size(self, kind: str, name: str) -> int:
        """How many customers the audience holds: a ZCARD per shard, one round trip."""
        with self._client.pipeline(transaction=False) as pipe:
            for shard in range(self.partitions):
                pipe.zcard(self.members_key(shard, kind, name))
            return sum(int(n) for n in pipe.execute())

    def audience_names(self, kind: str) -> dict[str, int]:
        """Every audience of ``kind`` with members: name -> size (a SCAN for the keys)."""
        pattern = _glob_escape(f"{{{self.namespace}:p".encode()) + b"*}:m:" + kind.encode()
        marker = b":m:" + kind.encode() + b":"
        names: dict[bytes, str] = {}
        for key in self._client.scan_iter(match=pattern + b":*", count=SCAN_COUNT):
            tag_end = key.index(b"}") + 1
            if key.startswith(marker, tag_end):  # not a customer id holding "}:m:"
                names[key] = key[tag_end + len(marker) :].decode("utf-8")
        keys = sorted(names)
        with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zcard(key)
            counts = pipe.execute()
        sizes: dict[str, int] = defaultdict(int)
        for key, n in zip(keys, counts, strict=True):
            sizes[names[key]] += int(n)
        return dict(sizes)

    def audience_page(self, kind: str, name: str, after: str | None, limit: int) -> list[str]:
        """Up to ``limit`` members after ``after`` in the order of their UTF-8 bytes: the
        first ``limit`` of each shard (ZRANGE BYLEX), merged."""
        if limit <= 0:
            return []
        start = b"(" + after.encode("utf-8") if after is not None else b"-"
        with self._client.pipeline(transaction=False) as pipe:
            for shard in range(self.partitions):
                key = self.members_key(shard, kind, name)
                pipe.zrangebylex(key, start, b"+", start=0, num=limit)
            pages: list[list[bytes]] = pipe.execute()
        merged = heapq.merge(*pages)
        return [raw.decode("utf-8") for raw in itertools.islice(merged, limit)]

    def rebuild_audiences(self) -> int:
        """Recompute every membership set from the stored states (a store written before
        audiences existed). Stop the workers first: it is not atomic with their commits.
        Returns the number of customers seen."""
        seen = 0
        for shard in range(self.partitions):
            pattern = _glob_escape(self._tags[shard]) + b":m:*"
            for key in self._client.scan_iter(match=pattern, count=SCAN_COUNT):
                self._client.unlink(key)
            ids = self.customer_ids(shard)
            sizes: Counter[str] = Counter()
            for begin in range(0, len(ids), CHUNK):
                states = self.load(shard, ids[begin : begin + CHUNK])
                members: dict[bytes, dict[bytes, float]] = defaultdict(dict)
                for cid, state in states.items():
                    for kind, name in memberships_of(state):
                        members[self.members_key(shard, kind, name)][cid.encode("utf-8")] = 0
                        sizes[size_tally((kind, name))] += 1
                with self._client.pipeline(transaction=False) as pipe:
                    for key, mapping in members.items():
                        pipe.zadd(key, mapping)
                    pipe.execute()
                sizes[CUSTOMERS_TALLY] += len(states)
                seen += len(states)
            # The running sizes of the shard (GET /tiers), replaced by the counted ones.
            stats = self.stats_key(shard)
            stale = [
                f for f in self._client.hkeys(stats) if f.startswith(SIZE_TALLY_PREFIX.encode())
            ]
            with self._client.pipeline(transaction=True) as pipe:
                if stale:
                    pipe.hdel(stats, *stale)
                pipe.hset(stats, CUSTOMERS_TALLY, sizes.pop(CUSTOMERS_TALLY, 0))
                if sizes:
                    pipe.hset(stats, mapping=dict(sizes))
                pipe.execute()
        self.set_meta(AUDIENCES_META, b"1")
        return seen

    # -------------------------------------------------------------- erasures
    def erased(self, shard: int, digests: list[str]) -> list[bytes | None]:
        """The shard's erasure markers of these salted digests (None: not erased)."""
        if not digests:
            return []
        return list(self._client.hmget(self.erased_key(shard), list(digests)))

    def erased_count(self, shard: int) -> int:
        return int(self._client.hlen(self.erased_key(shard)))

    def audit(self, shard: int) -> list[bytes]:
        """The shard's erasure audit records, oldest first."""
        return list(self._client.lrange(self.audit_key(shard), 0, -1))

    # ------------------------------------------------------------ operations
    def wipe(self) -> int:
        """Delete every key of this namespace (all shards, any partition count); returns
        how many. For tests and an operator's reset: stop the workers first."""
        deleted = 0
        for pattern in (f"{{{self.namespace}:p*", f"{self.namespace}:meta:*"):
            batch: list[bytes] = []
            for key in self._client.scan_iter(match=pattern.encode(), count=SCAN_COUNT):
                batch.append(key)
                if len(batch) >= CHUNK:
                    deleted += self._client.unlink(*batch)
                    batch = []
            if batch:
                deleted += self._client.unlink(*batch)
        self._heads.clear()
        return deleted

    def close(self) -> None:
        self._client.close()
        if self._probe is not None:
            self._probe.close()

    # --------------------------------------------------------------- helpers
    def _home_first(
        self,
        customer_ids: Collection[str],
        key: Callable[[int, str], bytes],
        read: Callable[[Any, bytes], None],
    ) -> dict[str, Any]:
        """customer id -> what ``read`` queues for ``key`` (a state, a history list) in the
        customer's home shard or, if that is empty, in the first other shard holding it.

        One pipelined round trip to the home shards, and one more to the other shards for
        the ids not found at home: only customers whose events were keyed differently live
        elsewhere. A key per command, so it works on a Cluster too."""
        ids = list(dict.fromkeys(customer_ids))
        orders = {cid: home_first(cid, self.partitions) for cid in ids}
        with self._client.pipeline(transaction=False) as pipe:
            for cid in ids:
                read(pipe, key(orders[cid][0], cid))
            found = {cid: value for cid, value in zip(ids, pipe.execute(), strict=True) if value}
        elsewhere = [(cid, shard) for cid in ids if cid not in found for shard in orders[cid][1:]]
        if elsewhere:
            with self._client.pipeline(transaction=False) as pipe:
                for cid, shard in elsewhere:
                    read(pipe, key(shard, cid))
                for (cid, _), value in zip(elsewhere, pipe.execute(), strict=True):
                    if value and cid not in found:
                        found[cid] = value
        return found

    def _mget(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """MGET in chunks, all in one round trip (every key of one call shares a slot)."""
        if len(keys) <= CHUNK:
            return list(self._client.mget(keys))
        with self._client.pipeline(transaction=False) as pipe:
            for start in range(0, len(keys), CHUNK):
                pipe.mget(keys[start : start + CHUNK])
            return [value for chunk in pipe.execute() for value in chunk]

    def _fetch(self, keys: Iterable[bytes]) -> Iterator[CustomerState]:
        keys = list(keys)
        for key, data in zip(keys, self._mget(keys), strict=True):
            if data is not None:  # None: deleted since the scan saw it
                # The tag holds no "}" but its last: the id starts after "}:c:".
                customer_id = key[key.index(b"}") + 4 :].decode("utf-8")
                yield _decode(customer_id, data)


class KeyLayout(Protocol):
    """The key names of one namespace (RedisStore and AsyncRedisStore share them)."""

    history_length: int

    def meta_key(self, shard: int) -> bytes: ...
    def due_key(self, shard: int) -> bytes: ...
    def outbox_key(self, shard: int) -> bytes: ...
    def stats_key(self, shard: int) -> bytes: ...
    def erased_key(self, shard: int) -> bytes: ...
    def audit_key(self, shard: int) -> bytes: ...
    def state_key(self, shard: int, customer_id: str) -> bytes: ...
    def history_key(self, shard: int, customer_id: str) -> bytes: ...
    def members_key(self, shard: int, kind: str, name: str) -> bytes: ...


def commit_request(
    layout: KeyLayout, lease: Lease, batch: Batch, trim_to: int | None
) -> tuple[list[bytes], list[Any]]:
    """KEYS and ARGV of the commit script for ``batch`` (stamping its commit id)."""
    commit_id = stamp(lease, batch)
    shard = lease.shard
    keys: list[bytes] = [
        layout.meta_key(shard),
        layout.due_key(shard),
        layout.outbox_key(shard),
        layout.stats_key(shard),
    ]
    args: list[Any] = [lease.epoch, commit_id[1], "" if trim_to is None else int(trim_to)]
    args.append(len(batch.offsets))
    for topic, offset in batch.offsets.items():
        expected = batch.expected.get(topic)
        args += [topic, "" if expected is None else int(expected), int(offset)]
    # The last write of a customer within the batch wins, as in the memory store.
    states = {state.customer_id: state for state in batch.states}
    keys += [layout.state_key(shard, cid) for cid in states]
    args.append(len(states))
    args += [_encode(state) for state in states.values()]
    args.append(len(batch.changes))
    args += batch.changes
    scheduled = [(cid, m) for cid, m in batch.schedule.items() if m is not None]
    unscheduled = [cid for cid, m in batch.schedule.items() if m is None]
    args.append(len(scheduled))
    for cid, moment in scheduled:
        args += [_score(moment), cid.encode("utf-8")]
    args.append(len(unscheduled))
    args += [cid.encode("utf-8") for cid in unscheduled]
    cap = layout.history_length
    history = {cid: e[-cap:] for cid, e in batch.history.items() if e} if cap else {}
    keys += [layout.history_key(shard, cid) for cid in history]
    args += [cap, len(history)]
    for entries in history.values():
        args.append(len(entries))
        args += entries
    tallies = [(name, int(n)) for name, n in batch.tallies.items() if n]
    args.append(len(tallies))
    for name, n in tallies:
        args += [name.encode("utf-8"), n]
    args.append(len(batch.erasures))
    if batch.erasures:
        keys += [layout.erased_key(shard), layout.audit_key(shard)]
        for erasure in batch.erasures:
            cid = erasure.customer_id
            keys += [layout.state_key(shard, cid), layout.history_key(shard, cid)]
            keys += erasure.extra_keys
            args += [cid.encode("utf-8"), erasure.digest, erasure.marker, erasure.audit]
            args.append(len(erasure.extra_keys))
    args.append(len(batch.memberships))
    for (kind, name), (leaving, joining) in batch.memberships.items():
        keys.append(layout.members_key(shard, kind, name))
        args.append(len(leaving))
        args += [cid.encode("utf-8") for cid in leaving]
        args.append(len(joining))
        args += [cid.encode("utf-8") for cid in joining]
    return keys, args


def applied_offsets(meta: dict[bytes, bytes]) -> dict[str, int]:
    """topic -> next offset to apply, from a shard's meta hash (its ``o:<topic>`` fields)."""
    return {name[2:].decode(): int(value) for name, value in meta.items() if name.startswith(b"o:")}


def check_commit_reply(lease: Lease, batch: Batch, reply: Sequence[Any]) -> int:
    """The outbox end (entries ever queued on the shard) of an applied commit, or raise."""
    code, value, end = int(reply[0]), reply[1], int(reply[2])
    if code == _FENCED:
        raise FencedError(lease, int(value))
    if code == _STALE:
        assert batch.commit_id is not None
        raise StaleBatchError(lease, batch.commit_id, int(value))
    if code == _MOVED:
        topic = value.decode() if isinstance(value, bytes) else str(value)
        raise OffsetsMovedError(lease.shard, topic, batch.expected.get(topic), None)
    if code == _MALFORMED:
        raise ValueError(f"shard {lease.shard}: the store refused a malformed commit: {value!r}")
    return end


def _read_value(pipe: Any, key: bytes) -> None:
    pipe.get(key)


def _score(moment: float) -> str:
    """A sorted-set score Redis parses back to the same double (repr round-trips)."""
    value = float(moment)
    if value != value:
        raise ValueError("a schedule moment cannot be NaN")
    return repr(value)


def _glob_escape(raw: bytes) -> bytes:
    """Escape SCAN MATCH glob characters (the hash tag's braces are literal)."""
    return re.sub(rb"([\\*?\[\]])", rb"\\\1", raw)
