"""The state store protocol.

State is sharded by Kafka input partition: shard ``p`` holds every customer whose events
arrive on partition ``p`` of the (co-partitioned) input topics, the offsets applied from
those partitions, the customers' next time-driven rescore moments, and the outbox of tier
changes not yet published. One ``commit`` writes all of that for one shard atomically, so
"state written" and "offset recorded" and "change queued" can never disagree.

Ownership is fenced: a worker that is assigned a partition ``acquire``s its shard, which
bumps the shard's epoch; a commit carrying an older epoch (a worker that lost the
partition in a rebalance but has not noticed yet) is refused with ``FencedError``.

Commits are numbered per lease, so that one whose outcome is unknown (the store applied
it but the reply was lost) can simply be committed again: the store recognises the
number of the commit it applied last and does nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from scoring.state import CustomerState
from tierstream.erasure import Erasure

# How many tier changes a store keeps per customer by default (the API shows them).
DEFAULT_HISTORY_LENGTH = 5


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof of ownership of one shard, valid until someone acquires it again."""

    shard: int
    epoch: int
    # Numbers this lease's commits (see Batch.commit_id); not part of the lease's identity.
    _commits: Iterator[int] = field(
        default_factory=lambda: itertools.count(1), compare=False, repr=False
    )

    def next_commit(self) -> int:
        """The number of this lease's next commit: 1, 2, 3, ..."""
        return next(self._commits)


@dataclass(slots=True)
class Batch:
    """Everything one atomic step writes to one shard."""

    # topic -> next offset to apply (last applied + 1); stored offsets never move back
    offsets: dict[str, int] = field(default_factory=dict)
    # topic -> the stored offset this batch was built on (None: none stored yet), for each
    # topic in ``offsets``. The store refuses the batch (OffsetsMovedError) unless the
    # stored offsets still say exactly this: a partition's applied offset only ever
    # advances from where it stands, over messages this batch applied.
    expected: dict[str, int | None] = field(default_factory=dict)
    states: list[CustomerState] = field(default_factory=list)
    # serialized tier changes, appended to the shard's outbox in this order
    changes: list[bytes] = field(default_factory=list)
    # customer id -> next moment (epoch seconds) a score may move with no event; None: never
    schedule: dict[str, float | None] = field(default_factory=dict)
    # customer id -> compact records of this batch's tier changes, oldest first
    # (history_entry); the store adds them to the customer's capped recent history
    history: dict[str, list[bytes]] = field(default_factory=dict)
    # counter name -> increment, added to the shard's running totals (record_changes)
    tallies: dict[str, int] = field(default_factory=dict)
    # customers erased by this batch (tierstream.erasure): their state, history, schedule
    # entry and hook keys are deleted before ``states`` are written (a state of the same id
    # in ``states`` is a fresh one, begun after the erasure), and their markers and audit
    # records are kept under a salted hash
    erasures: list[Erasure] = field(default_factory=list)
    # audience (kind, name) -> (customer ids leaving it, customer ids joining it): the
    # membership changes of this batch's states and erasures (see memberships_of), applied
    # after ``states`` and ``erasures`` in the same atomic step
    memberships: dict[Audience, tuple[list[str], list[str]]] = field(default_factory=dict)
    # (lease epoch, lease commit number), stamped by the first commit() of this batch.
    # Committing the same Batch again after an error (outcome unknown) is then safe: the
    # store does nothing if that commit is the one it applied last.
    commit_id: tuple[int, int] | None = None


# Audiences: the customers of one tier ("tier"), RFM segment ("segment") or behaviour
# segment ("behaviour", by label). Each store keeps one membership set per (kind, name) per
# shard, written by the same commit as the states, so it is exact after any crash.
AUDIENCE_KINDS = ("tier", "segment", "behaviour")
Audience = tuple[str, str]  # (kind, name)


# Running totals kept with the memberships: stored customers, and each audience's size.
CUSTOMERS_TALLY = "customers"
# Global metadata set by a rebuild of the sets: from then on every commit keeps them and
# their sizes exact, so GET /tiers and /segments read the sizes instead of scanning.
AUDIENCES_META = "audiences"
SIZE_TALLY_PREFIX = "size:"


def size_tally(audience: Audience) -> str:
    """Tally name of an audience's size: ``size:<kind>:<name>`` (the name is the rest)."""
    return f"{SIZE_TALLY_PREFIX}{audience[0]}:{audience[1]}"


# Where a state stands, as the audiences see it: (tier, segment, behaviour label).
Placement = tuple[str | None, str | None, str | None]
UNPLACED: Placement = (None, None, None)


def placement_of(state: CustomerState | None) -> Placement:
    """The state's (tier, segment, behaviour label); all None for no state. A plain tuple,
    cheap to take for every loaded state and to compare in the hot path."""
    if state is None:
        return UNPLACED
    behaviour = state.behaviour[1] if state.behaviour is not None else None
    return (state.tier, state.segment, behaviour)


def audiences_of(placement: Placement) -> frozenset[Audience]:
    return frozenset(
        (kind, name)
        for kind, name in zip(AUDIENCE_KINDS, placement, strict=True)
        if name is not None
    )


def memberships_of(state: CustomerState | None) -> frozenset[Audience]:
    """The audiences a (stored) state belongs to; none for no state."""
    return audiences_of(placement_of(state))


class FencedError(RuntimeError):
    """The shard was acquired by another owner since this lease was taken."""

    def __init__(self, lease: Lease, current: int) -> None:
        super().__init__(
            f"shard {lease.shard} is fenced: lease epoch {lease.epoch}, current epoch {current}"
        )
        self.lease = lease
        self.current = current


class StaleBatchError(ValueError):
    """A batch committed again out of turn: under another lease, or after a newer commit."""

    def __init__(self, lease: Lease, commit_id: tuple[int, int], last: int | None) -> None:
        if last is None:
            why = f"was first committed under epoch {commit_id[0]}, not {lease.epoch}"
        else:
            why = f"is older than commit {last}, the last one applied under this lease"
        super().__init__(
            f"shard {lease.shard}: batch {commit_id} {why}; rebuild it from reloaded state"
        )
        self.lease = lease
        self.commit_id = commit_id


class OffsetsMovedError(RuntimeError):
    """The stored offsets are not the ones a batch was built on: rebuild it from the store."""

    def __init__(self, shard: int, topic: str, expected: int | None, stored: int | None) -> None:
        super().__init__(
            f"shard {shard}: the applied offset of {topic} is {stored}, "
            f"but the batch was built on {expected}; re-reading the shard"
        )
        self.shard = shard
        self.topic = topic


def check_expected(shard: int, batch: Batch, stored: Mapping[str, int]) -> None:
    """Raise ``OffsetsMovedError`` unless ``stored`` offsets are the ones ``batch`` expects."""
    for topic in batch.offsets:
        expected = batch.expected.get(topic)
        if stored.get(topic) != expected:
            raise OffsetsMovedError(shard, topic, expected, stored.get(topic))


def stamp(lease: Lease, batch: Batch) -> tuple[int, int]:
    """Give ``batch`` its commit id, once: (lease epoch, lease commit number).

    Raises ``StaleBatchError`` for a batch stamped by another lease.
    """
    if batch.commit_id is None:
        batch.commit_id = (lease.epoch, lease.next_commit())
    elif batch.commit_id[0] != lease.epoch:
        raise StaleBatchError(lease, batch.commit_id, None)
    return batch.commit_id


class StateStore(Protocol):
    partitions: int

    def acquire(self, shard: int) -> Lease:
        """Take ownership of a shard (fencing any previous owner)."""
        ...

    def offsets(self, shard: int) -> dict[str, int]:
        """topic -> next offset to apply, for this shard."""
        ...

    def load(self, shard: int, customer_ids: Collection[str]) -> dict[str, CustomerState]:
        """The stored states of those customers that exist (absent ids are left out)."""
        ...

    def commit(self, lease: Lease, batch: Batch) -> None:
        """Write ``batch`` atomically, or raise ``FencedError`` and write nothing.

        Stamps ``batch.commit_id`` on the first call. Calling again with the same batch
        and lease is a no-op when that commit is the one applied last (a retry after a
        lost reply); a batch stamped by another lease, or older than the commit applied
        last, raises ``StaleBatchError``: it cannot be told apart from work already done.
        """
        ...

    def due(self, shard: int, until: float, limit: int) -> list[str]:
        """Customers whose scheduled rescore moment is at or before ``until``, earliest first."""
        ...

    def outbox(self, shard: int, limit: int) -> list[bytes]:
        """The oldest queued tier changes of this shard, not yet acknowledged."""
        ...

    def ack(self, lease: Lease, count: int) -> None:
        """Drop the ``count`` oldest outbox entries (they were published)."""
        ...

    def get(self, customer_id: str) -> CustomerState | None:
        """One customer's state from whichever shard holds it."""
        ...

    def customer_ids(self, shard: int) -> list[str]:
        """Every customer id stored in one shard."""
        ...

    def scan(self) -> Iterator[CustomerState]:
        """Every stored customer state (no particular order)."""
        ...

    def history(
        self, customer_id: str, limit: int = DEFAULT_HISTORY_LENGTH
    ) -> list[dict[str, Any]]:
        """The customer's most recent tier changes, newest first (see decode_history)."""
        ...

    def lookup(
        self, customer_id: str, limit: int = DEFAULT_HISTORY_LENGTH
    ) -> tuple[CustomerState | None, list[dict[str, Any]]]:
        """``get`` and ``history`` together, in one round trip where the store can."""
        ...

    def tallies(self) -> dict[str, int]:
        """The running totals of every shard's committed ``Batch.tallies``, summed."""
        ...

    def ping(self) -> None:
        """Raise if the store cannot be reached (health checks, round-trip timing)."""
        ...

    def erased(self, shard: int, digests: list[str]) -> list[bytes | None]:
        """The shard's erasure markers of these salted id digests (None: not erased)."""
        ...

    def erased_count(self, shard: int) -> int:
        """How many erasure markers the shard holds."""
        ...

    def get_meta(self, name: str) -> bytes | None: ...

    def set_meta(self, name: str, value: bytes) -> None: ...

    def close(self) -> None: ...


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's and aiokafka's default partitioner hash)."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = (
            (data[i4] & 0xFF)
            + ((data[i4 + 1] & 0xFF) << 8)
            + ((data[i4 + 2] & 0xFF) << 16)
            + ((data[i4 + 3] & 0xFF) << 24)
        )
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    if extra >= 3:
        h ^= (data[(length & ~3) + 2] & 0xFF) << 16
    if extra >= 2:
        h ^= (data[(length & ~3) + 1] & 0xFF) << 8
    if extra >= 1:
        h ^= data[length & ~3] & 0xFF
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def shard_for(customer_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner puts this customer's keyed events on."""
    return (murmur2(customer_id.encode("utf-8")) & 0x7FFFFFFF) % partitions


def home_first(customer_id: str, partitions: int) -> list[int]:
    """The shards to look for a customer in: its home shard (``shard_for``), then the
    others, where only customers whose events were keyed differently live."""
    home = shard_for(customer_id, partitions)
    return [home, *(shard for shard in range(partitions) if shard != home)]
