"""Move the stored state to another partition count (``tierstream repartition --to N``).

Shard ``p`` holds the customers whose events arrive on input partition ``p``, and Kafka's
default partitioner sends customer ``c`` to ``murmur2(c) mod partitions``. Adding input
partitions therefore changes the home of most customers; this moves each customer's keys
(state, recent history, schedule entry) and its entries in the audience membership sets
to its new home shard. Kafka keeps the numbers of existing partitions, so shard
``p < from`` keeps everything that is about the partition rather than the customers: its
meta hash (epoch, applied offsets, outbox head), its running totals and its (emptied)
outbox. Erasure markers, keyed by a salted hash from which no shard can be computed, are
copied to every shard. A new shard ``q >= from`` starts with no applied offsets: its
partition is new, so the worker reads it from the beginning.

Safe to interrupt and run again. A progress marker in the store's metadata holds the plan
(from, to) and a fingerprint of every customer taken before the first key moved. A
customer is copied to its new shard first (DUMP/RESTORE, which overwrites) and deleted from
the old one after, schedule entry and history before the state: an interrupted run leaves
some customers in both shards, never in neither, and the old shard's copy (the one still
there) is what the next run copies again. On Redis Cluster the two shards are in different
slots, so a move cannot be one atomic step; this order is what makes it repeatable.

At the end every customer is counted, fingerprinted and checked to be in its home shard;
the fingerprint and the running totals must equal those taken before. Only then is the
new partition count recorded (metadata ``partitions``) and the marker removed.

The caller makes sure no worker runs (tierstream/repartition_kafka.py checks the consumer
group and the input topics). This module also takes a lease on every shard, fencing any
worker that is still around: its next commit is refused; and it refuses to finish when a
shard's epoch moved while it ran (someone acquired it).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tierstream.stores.base import Lease, memberships_of, shard_for
from tierstream.stores.redis import RedisStore

# Global metadata: the partition count the stored layout is in, and the progress marker.
LAYOUT_META = "partitions"
REPARTITION_META = "repartition"
# The per-shard markers of behaviour and scoring-config sweeps (streams/runtime.py).
SWEPT_MARKERS = ("segments_swept", "config_swept")

# Customers moved per round trip.
MOVE_CHUNK = 500

# Delivers one shard's outbox entries to Kafka, returning only when every one is
# acknowledged (tierstream/repartition_kafka.py).
Deliver = Callable[[int, list[bytes]], None]


class RepartitionError(RuntimeError):
    """The move cannot start, or did not verify: a one-line reason for the operator."""


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """Every customer's keys, summarised: count and an order-independent digest."""

    customers: int
    digest: int
    tallies: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"customers": self.customers, "digest": str(self.digest), "tallies": self.tallies}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Fingerprint:
        return cls(int(raw["customers"]), int(raw["digest"]), dict(raw["tallies"]))


@dataclass(slots=True)
class Report:
    source: int
    target: int
    customers: int = 0
    moved: int = 0
    delivered: int = 0
    resumed: bool = False


def stored_partitions(store: RedisStore, configured: int) -> int:
    """The partition count of the stored layout: recorded by the last repartition, else
    the configured one (a deployment that never repartitioned)."""
    raw = store.get_meta(LAYOUT_META)
    return int(raw) if raw else configured


def pending(store: RedisStore) -> dict[str, Any] | None:
    """The plan of a repartition that started and has not finished, if any."""
    raw = store.get_meta(REPARTITION_META)
    return json.loads(raw) if raw else None


def layout_problem(store: RedisStore, partitions: int) -> str | None:
    """Why a worker configured for ``partitions`` must not start on this store, if so."""
    unfinished = pending(store)
    if unfinished is not None:
        return (
            f"a repartition from {unfinished['from']} to {unfinished['to']} partitions is "
            f"unfinished: run `tierstream repartition --to {unfinished['to']}` to finish it first"
        )
    recorded = store.get_meta(LAYOUT_META)
    if recorded is not None and int(recorded) != partitions:
        return (
            f"the store is laid out for {int(recorded)} partitions, but TIERSTREAM_PARTITIONS "
            f"is {partitions}"
        )
    return None


def plan(store: RedisStore, configured: int, target: int) -> tuple[int, bool]:
    """(partition count to move from, whether an interrupted run is resumed)."""
    unfinished = pending(store)
    if unfinished is not None:
        if int(unfinished["to"]) != target:
            raise RepartitionError(
                f"a repartition from {unfinished['from']} to {unfinished['to']} partitions "
                f"is unfinished: run it again with --to {unfinished['to']}"
            )
        return int(unfinished["from"]), True
    source = stored_partitions(store, configured)
    if target < source:
        raise RepartitionError(
            f"cannot go from {source} to {target} partitions: Kafka only adds partitions"
        )
    return source, False


def customers(store: RedisStore) -> dict[int, list[str]]:
    """shard -> the customer ids stored in it, for every shard of the namespace (one
    SCAN of the keyspace, whatever the partition count)."""
    prefix = f"{{{store.namespace}:p".encode()
    found: dict[int, set[str]] = defaultdict(set)
    for key in store._client.scan_iter(match=prefix + b"*}:c:*", count=1000):
        end = key.index(b"}")
        if not key.startswith(b":c:", end + 1):
            continue  # another key whose customer id holds "}:c:" (a history list)
        found[int(key[len(prefix) : end])].add(key[end + 4 :].decode("utf-8"))
    return {shard: sorted(ids) for shard, ids in found.items()}


def fingerprint(store: RedisStore, shards: int) -> Fingerprint:
    """Count and digest every customer of shards ``0..shards-1`` (their state, history
    and schedule entry, wherever they are) plus the summed running totals."""
    count = 0
    digest = 0
    for shard, ids in customers(store).items():
        if shard >= shards:
            continue
        count += len(ids)
        for start in range(0, len(ids), MOVE_CHUNK):
            chunk = ids[start : start + MOVE_CHUNK]
            for cid, (state, history, score) in zip(chunk, _read(store, shard, chunk), strict=True):
                digest = (digest + _customer_digest(cid, state, history, score)) % 2**64
    return Fingerprint(count, digest, _tallies(store, shards))


def misplaced(store: RedisStore, partitions: int) -> int:
    """Customers stored outside their home shard ``shard_for(id, partitions)``."""
    return sum(
        1
        for shard, ids in customers(store).items()
        for cid in ids
        if shard >= partitions or shard_for(cid, partitions) != shard
    )


def begin(
    store: RedisStore,
    source: int,
    target: int,
    progress: Callable[[str], None] = lambda line: None,
) -> None:
    """Check the store can move, fingerprint it and write the progress marker: from here
    on the move is pending (``pending``, ``layout_problem``) until ``repartition`` verifies
    it. Nothing is moved."""
    stored = customers(store)
    for shard in range(source, target):
        if store.offsets(shard) or stored.get(shard):
            raise RepartitionError(
                f"shard {shard} already holds state or offsets: did a worker run with "
                f"more than {source} partitions? (TIERSTREAM_PARTITIONS must be the count "
                "the workers ran with)"
            )
    progress(f"fingerprinting the {source} shards before the move")
    before = fingerprint(store, source)
    if misplaced(store, source):
        raise RepartitionError(
            f"the store holds customers outside their home shard for {source} "
            "partitions: is TIERSTREAM_PARTITIONS the partition count the workers ran with?"
        )
    marker: dict[str, Any] = {"from": source, "to": target, "before": before.to_dict()}
    store.set_meta(REPARTITION_META, json.dumps(marker).encode())


def repartition(
    store: RedisStore,
    source: int,
    target: int,
    deliver: Deliver,
    *,
    resumed: bool = False,
    progress: Callable[[str], None] = lambda line: None,
    after_chunk: Callable[[int], None] = lambda moved: None,
) -> Report:
    """Move the store from ``source`` to ``target`` partitions (see the module docstring).

    ``store`` must cover ``target`` shards (``RedisStore(partitions=target)``).
    ``after_chunk`` is called after each chunk of moved customers (tests interrupt there).
    """
    if store.partitions < target:
        raise ValueError(f"the store covers {store.partitions} shards, not {target}")
    report = Report(source, target, resumed=resumed)
    if not resumed:
        begin(store, source, target, progress)
    before = Fingerprint.from_dict((pending(store) or {})["before"])
    # Fence whatever worker may still hold a shard: its next commit is refused.
    leases = [store.acquire(shard) for shard in range(target)]
    report.delivered = _deliver_outboxes(store, leases[:source], deliver, progress)
    stored = customers(store)
    for shard in range(source):
        report.moved += _move_shard(store, shard, stored.get(shard, []), target, after_chunk)
        progress(f"shard {shard}: moved; {report.moved:,} customers moved so far")
    _carry_sweep_markers(store, source, target)
    _spread_erasure_markers(store, source, target)
    after = fingerprint(store, target)
    wrong = misplaced(store, target)
    if after != before or wrong:
        raise RepartitionError(
            f"verification failed: {after.customers:,} customers after, {before.customers:,} "
            f"before; digest {'equal' if after.digest == before.digest else 'differs'}; "
            f"totals {'equal' if after.tallies == before.tallies else 'differ'}; "
            f"{wrong:,} outside their home shard. Nothing was deleted that was not "
            "copied first; the progress marker stays."
        )
    for lease in leases:
        epoch = _epoch(store, lease.shard)
        if epoch != lease.epoch:
            raise RepartitionError(
                f"shard {lease.shard} was acquired by someone else while moving "
                f"(epoch {epoch}, ours {lease.epoch}): is a worker running? Stop it and run "
                "again"
            )
    store.set_meta(LAYOUT_META, str(target).encode())
    store._client.delete(store.global_key(REPARTITION_META))
    report.customers = after.customers
    return report


# ------------------------------------------------------------------ the steps
def _deliver_outboxes(
    store: RedisStore, leases: Sequence[Lease], deliver: Deliver, progress: Callable[[str], None]
) -> int:
    """Publish and trim every old shard's outbox, so that no customer's older change is
    still queued in one shard while its newer ones leave from another."""
    delivered = 0
    for lease in leases:
        while entries := store.outbox(lease.shard, 10_000):
            deliver(lease.shard, entries)
            store.ack(lease, len(entries))
            delivered += len(entries)
    if delivered:
        progress(f"delivered {delivered:,} outbox entries left by the workers")
    return delivered


def _move_shard(
    store: RedisStore,
    shard: int,
    ids: Sequence[str],
    target: int,
    after_chunk: Callable[[int], None],
) -> int:
    leaving = [cid for cid in ids if shard_for(cid, target) != shard]
    moved = 0
    for start in range(0, len(leaving), MOVE_CHUNK):
        chunk = leaving[start : start + MOVE_CHUNK]
        _move(store, shard, target, chunk)
        moved += len(chunk)
        after_chunk(moved)
    return moved


def _move(store: RedisStore, shard: int, target: int, ids: Sequence[str]) -> None:
    client = store._client  # the store's own connection (plain or Cluster)
    with client.pipeline(transaction=False) as pipe:
        for cid in ids:
            pipe.dump(store.state_key(shard, cid))
            pipe.dump(store.history_key(shard, cid))
            pipe.zscore(store.due_key(shard), cid.encode("utf-8"))
        found = pipe.execute()
    # The audiences each customer belongs to (memberships_of its state): its entries in
    # the shard's membership sets move with it.
    audiences = {cid: memberships_of(state) for cid, state in store.load(shard, ids).items()}
    by_home: dict[int, list[tuple[str, Any, Any, Any]]] = defaultdict(list)
    for k, cid in enumerate(ids):
        by_home[shard_for(cid, target)].append((cid, *found[3 * k : 3 * k + 3]))
    # 1. Copy: everything the old shard still holds overwrites the new shard's copy.
    for home, rows in by_home.items():
        with client.pipeline(transaction=False) as pipe:
            for cid, state, history, score in rows:
                if state is not None:
                    pipe.restore(store.state_key(home, cid), 0, state, replace=True)
                if history is not None:
                    pipe.restore(store.history_key(home, cid), 0, history, replace=True)
                if score is not None:
                    pipe.zadd(store.due_key(home), {cid.encode("utf-8"): score})
                for kind, name in audiences.get(cid, ()):
                    pipe.zadd(store.members_key(home, kind, name), {cid.encode("utf-8"): 0})
            pipe.execute()
    # 2. Delete from the old shard, states last: a state still there means "not done".
    with client.pipeline(transaction=False) as pipe:
        pipe.zrem(store.due_key(shard), *(cid.encode("utf-8") for cid in ids))
        for cid, memberships in audiences.items():
            for kind, name in memberships:
                pipe.zrem(store.members_key(shard, kind, name), cid.encode("utf-8"))
        # One key per UNLINK: a Cluster client's pipeline takes no multi-key UNLINK.
        for cid in ids:
            pipe.unlink(store.history_key(shard, cid))
        for cid in ids:
            pipe.unlink(store.state_key(shard, cid))
        pipe.execute()


def _carry_sweep_markers(store: RedisStore, source: int, target: int) -> None:
    """A new shard holds customers swept with the oldest model (or config) any old shard
    was swept with: record that, so the worker does not sweep them again for nothing."""
    for marker in SWEPT_MARKERS:
        versions = [store.get_meta(f"{marker}:{shard}") for shard in range(source)]
        if not versions or any(version is None for version in versions):
            continue
        oldest = min(int(version) for version in versions if version is not None)
        for shard in range(source, target):
            store.set_meta(f"{marker}:{shard}", str(oldest).encode())


def _spread_erasure_markers(store: RedisStore, source: int, target: int) -> None:
    """Give every shard the erasure markers of all old shards.

    A marker is keyed by a salted hash of the customer id, so the id's new home shard
    cannot be computed from it; a copy in every shard is where the new home finds it
    (later events of the id continue its version numbers, or stay suppressed). Markers are
    a few dozen bytes each; copying with HSETNX makes a resumed run a no-op for those
    already copied and never overwrites a marker a shard already has.
    """
    client = store._client
    markers: dict[bytes, bytes] = {}
    for shard in range(source):
        markers.update(client.hgetall(store.erased_key(shard)))
    if not markers:
        return
    for shard in range(target):
        key = store.erased_key(shard)
        with client.pipeline(transaction=False) as pipe:
            for digest, marker in markers.items():
                pipe.hsetnx(key, digest, marker)
            pipe.execute()


# ------------------------------------------------------------------ helpers
def _read(store: RedisStore, shard: int, ids: Sequence[str]) -> list[tuple[Any, Any, Any]]:
    client = store._client
    with client.pipeline(transaction=False) as pipe:
        for cid in ids:
            pipe.get(store.state_key(shard, cid))
            pipe.lrange(store.history_key(shard, cid), 0, -1)
            pipe.zscore(store.due_key(shard), cid.encode("utf-8"))
        found = pipe.execute()
    return [tuple(found[3 * k : 3 * k + 3]) for k in range(len(ids))]


def _customer_digest(cid: str, state: bytes | None, history: list[bytes], score: Any) -> int:
    hasher = hashlib.blake2b(digest_size=8)
    for part in (cid.encode("utf-8"), state or b"", *history, repr(score).encode()):
        hasher.update(len(part).to_bytes(4, "big"))
        hasher.update(part)
    return int.from_bytes(hasher.digest(), "big")


def _epoch(store: RedisStore, shard: int) -> int:
    return int(store._client.hget(store.meta_key(shard), "epoch") or 0)


def _tallies(store: RedisStore, shards: int) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for shard in range(shards):
        for name, value in store._client.hgetall(store.stats_key(shard)).items():
            total[name.decode("utf-8")] += int(value)
    return dict(total)
