"""The in-memory store: the embedded default, with the same semantics as the Redis store."""

from __future__ import annotations

import heapq
import threading
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from scoring.state import CustomerState
from tierstream.stores.base import (
    AUDIENCES_META,
    CUSTOMERS_TALLY,
    DEFAULT_HISTORY_LENGTH,
    SIZE_TALLY_PREFIX,
    Audience,
    Batch,
    FencedError,
    Lease,
    StaleBatchError,
    check_expected,
    home_first,
    memberships_of,
    size_tally,
    stamp,
)
from tierstream.stores.commit_recipe import decode_history


@dataclass
class _Shard:
    epoch: int = 0
    last_commit: int = 0  # number of the last commit applied under the current epoch
    offsets: dict[str, int] = field(default_factory=dict)
    states: dict[str, CustomerState] = field(default_factory=dict)
    schedule: dict[str, float] = field(default_factory=dict)
    outbox: list[bytes] = field(default_factory=list)
    # customer id -> recent history entries, newest first, at most history_length
    history: dict[str, list[bytes]] = field(default_factory=dict)
    tallies: Counter[str] = field(default_factory=Counter)
    # salted digest -> erasure marker; the audit records (tierstream.erasure)
    erased: dict[str, str] = field(default_factory=dict)
    audit: list[bytes] = field(default_factory=list)
    # (kind, name) -> the customer ids of that audience (Batch.memberships)
    members: dict[Audience, set[str]] = field(default_factory=dict)


class MemoryStore:
    """Holds state in this process. States are copied in and out, as a remote store would."""

    def __init__(
        self, partitions: int = 1, *, history_length: int = DEFAULT_HISTORY_LENGTH
    ) -> None:
        if history_length < 0:
            raise ValueError(f"history_length must be 0 or more, not {history_length}")
        self.partitions = partitions
        self.history_length = history_length
        self._shards = [_Shard() for _ in range(partitions)]
        self._meta: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def acquire(self, shard: int) -> Lease:
        with self._lock:
            self._shards[shard].epoch += 1
            self._shards[shard].last_commit = 0
            return Lease(shard, self._shards[shard].epoch)

    def offsets(self, shard: int) -> dict[str, int]:
        with self._lock:
            return dict(self._shards[shard].offsets)

    def load(self, shard: int, customer_ids: Collection[str]) -> dict[str, CustomerState]:
        with self._lock:
            states = self._shards[shard].states
            return {cid: states[cid].copy() for cid in customer_ids if cid in states}

    def commit(self, lease: Lease, batch: Batch) -> None:
        commit_id = stamp(lease, batch)
        with self._lock:
            shard = self._shards[lease.shard]
            if shard.epoch != lease.epoch:
                raise FencedError(lease, shard.epoch)
            if commit_id[1] == shard.last_commit:
                return  # committed again after it applied
            if commit_id[1] < shard.last_commit:
                raise StaleBatchError(lease, commit_id, shard.last_commit)
            check_expected(lease.shard, batch, shard.offsets)
            shard.last_commit = commit_id[1]
            for topic, offset in batch.offsets.items():
                shard.offsets[topic] = max(offset, shard.offsets.get(topic, 0))
            for erasure in batch.erasures:
                cid = erasure.customer_id
                shard.states.pop(cid, None)
                shard.history.pop(cid, None)
                shard.schedule.pop(cid, None)
                shard.erased[erasure.digest] = erasure.marker
                shard.audit.append(erasure.audit)
            for state in batch.states:
                shard.states[state.customer_id] = state.copy()
            shard.outbox.extend(batch.changes)
            for customer_id, moment in batch.schedule.items():
                if moment is None:
                    shard.schedule.pop(customer_id, None)
                else:
                    shard.schedule[customer_id] = moment
            if self.history_length:
                for customer_id, entries in batch.history.items():
                    recent = list(reversed(entries)) + shard.history.get(customer_id, [])
                    shard.history[customer_id] = recent[: self.history_length]
            shard.tallies.update(batch.tallies)
            for audience, (leaving, joining) in batch.memberships.items():
                members = shard.members.setdefault(audience, set())
                members.difference_update(leaving)
                members.update(joining)
                if not members:
                    del shard.members[audience]  # as Redis drops an emptied sorted set

    def due(self, shard: int, until: float, limit: int) -> list[str]:
        with self._lock:
            schedule = self._shards[shard].schedule
            ready = ((moment, cid) for cid, moment in schedule.items() if moment <= until)
            return [cid for _, cid in heapq.nsmallest(limit, ready)]

    def outbox(self, shard: int, limit: int) -> list[bytes]:
        with self._lock:
            return list(self._shards[shard].outbox[:limit])

    def ack(self, lease: Lease, count: int) -> None:
        with self._lock:
            shard = self._shards[lease.shard]
            if shard.epoch != lease.epoch:
                raise FencedError(lease, shard.epoch)
            del shard.outbox[:count]

    def get(self, customer_id: str) -> CustomerState | None:
        with self._lock:
            for index in home_first(customer_id, self.partitions):
                state = self._shards[index].states.get(customer_id)
                if state is not None:
                    return state.copy()
        return None

    def history(
        self, customer_id: str, limit: int = DEFAULT_HISTORY_LENGTH
    ) -> list[dict[str, Any]]:
        with self._lock:
            for index in home_first(customer_id, self.partitions):
                entries = self._shards[index].history.get(customer_id)
                if entries:
                    return [decode_history(customer_id, e) for e in entries[: max(limit, 0)]]
        return []

    def lookup(
        self, customer_id: str, limit: int = DEFAULT_HISTORY_LENGTH
    ) -> tuple[CustomerState | None, list[dict[str, Any]]]:
        return self.get(customer_id), self.history(customer_id, limit)

    def tallies(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        with self._lock:
            for shard in self._shards:
                total.update(shard.tallies)
        return dict(total)

    def shard_tally(self, shard: int, name: str) -> int:
        with self._lock:
            return self._shards[shard].tallies.get(name, 0)

    def ping(self) -> None:
        return None

    def customer_ids(self, shard: int) -> list[str]:
        with self._lock:
            return sorted(self._shards[shard].states)

    def scan(self) -> Iterator[CustomerState]:
        with self._lock:
            snapshot = [s.copy() for shard in self._shards for s in shard.states.values()]
        return iter(snapshot)

    def audience_size(self, kind: str, name: str) -> int:
        """How many customers the audience holds (all shards)."""
        with self._lock:
            return sum(len(s.members.get((kind, name), ())) for s in self._shards)

    def audience_names(self, kind: str) -> dict[str, int]:
        """Every audience of ``kind`` with members: name -> size."""
        sizes: Counter[str] = Counter()
        with self._lock:
            for shard in self._shards:
                for (k, name), members in shard.members.items():
                    if k == kind:
                        sizes[name] += len(members)
        return dict(sizes)

    def audience_page(self, kind: str, name: str, after: str | None, limit: int) -> list[str]:
        """Up to ``limit`` members after ``after``, in the order of their UTF-8 bytes."""
        start = after.encode("utf-8") if after is not None else None
        with self._lock:
            ids = [cid for s in self._shards for cid in s.members.get((kind, name), ())]
        keyed = sorted((cid.encode("utf-8"), cid) for cid in ids)
        return [cid for raw, cid in keyed if start is None or raw > start][: max(limit, 0)]

    def rebuild_audiences(self) -> int:
        """Recompute every membership set from the states; returns the customers seen."""
        with self._lock:
            seen = 0
            for shard in self._shards:
                shard.members = {}
                for name in [n for n in shard.tallies if n.startswith(SIZE_TALLY_PREFIX)]:
                    del shard.tallies[name]
                for cid, state in shard.states.items():
                    seen += 1
                    for audience in memberships_of(state):
                        shard.members.setdefault(audience, set()).add(cid)
                        shard.tallies[size_tally(audience)] += 1
                shard.tallies[CUSTOMERS_TALLY] = len(shard.states)
            self._meta[AUDIENCES_META] = b"1"
            return seen

    def erased(self, shard: int, digests: list[str]) -> list[bytes | None]:
        with self._lock:
            markers = self._shards[shard].erased
            return [markers[d].encode() if d in markers else None for d in digests]

    def erased_count(self, shard: int) -> int:
        with self._lock:
            return len(self._shards[shard].erased)

    def audit(self, shard: int) -> list[bytes]:
        with self._lock:
            return list(self._shards[shard].audit)

    def set_meta_if_absent(self, name: str, value: bytes) -> None:
        with self._lock:
            self._meta.setdefault(name, value)

    def get_meta(self, name: str) -> bytes | None:
        with self._lock:
            return self._meta.get(name)

    def set_meta(self, name: str, value: bytes) -> None:
        with self._lock:
            self._meta[name] = value

    def close(self) -> None:
        return None
