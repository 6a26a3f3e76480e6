"""Audiences: the customers of one tier, RFM segment or behaviour segment.

Each store keeps, per shard, one membership set per audience (kind ``tier``, ``segment``
or ``behaviour``, and the name; a behaviour segment by its label), written by the same
atomic commit as the customers' states (``Batch.memberships``, recorded by the shard
step), so a set is exact after any crash, and a size is one count per shard.

Members are listed in the order of their UTF-8 bytes (Redis' BYLEX order), a page at a
time. The cursor of the next page is the last customer id of the page, base64url-encoded
without padding (ids are free text): a page starts strictly after it, so a customer who
stays in the audience while it is paged is listed exactly once, whatever joins or leaves
meanwhile (those may or may not be listed).

A store written before audiences existed has no sets: ``tierstream audience --rebuild``
computes them once from the states (workers stopped); from then on every commit keeps them.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from scoring.state import CustomerState
from tierstream.stores.base import (
    AUDIENCE_KINDS,
    AUDIENCES_META,
    CUSTOMERS_TALLY,
    SIZE_TALLY_PREFIX,
    Audience,
    memberships_of,
    size_tally,
)


@dataclass
class Sizes:
    """Customers per tier and segment (None: no tier or segment), as the API serves them."""

    tiers: Counter[str | None]
    segments: Counter[str | None]
    customers: int
    computed_at: datetime
    monotonic: float
    seconds: float  # how long the scan took
    method: str = "scan"  # or "counts": the running sizes kept by the commit (audiences)


# A page of members: the API's default and most.
DEFAULT_PAGE = 100
MAX_PAGE = 1000


class AudienceStore(Protocol):
    partitions: int

    def audience_size(self, kind: str, name: str) -> int: ...
    def audience_names(self, kind: str) -> dict[str, int]: ...
    def audience_page(self, kind: str, name: str, after: str | None, limit: int) -> list[str]: ...
    def rebuild_audiences(self) -> int: ...
    def scan(self) -> Iterator[CustomerState]: ...


class BadCursor(ValueError):
    """A cursor this module did not make."""


def encode_cursor(customer_id: str) -> str:
    return base64.urlsafe_b64encode(customer_id.encode("utf-8")).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if not cursor or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != cursor:
            raise ValueError
        return raw.decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursor("cursor: not one returned as next_cursor by this route") from None


def members(store: AudienceStore, kind: str, name: str, page: int = MAX_PAGE) -> Iterator[str]:
    """Every member of one audience, page by page (see the module docstring)."""
    after: str | None = None
    while ids := store.audience_page(kind, name, after, page):
        yield from ids
        after = ids[-1]


def scanned(states: Iterable[CustomerState]) -> dict[Audience, set[str]]:
    """The audiences computed from states (the check of the maintained sets)."""
    found: dict[Audience, set[str]] = defaultdict(set)
    for state in states:
        for audience in memberships_of(state):
            found[audience].add(state.customer_id)
    return dict(found)


def differences(store: AudienceStore) -> list[str]:
    """Where the maintained sets differ from a scan of the states: one line per audience
    (empty: they are equal). Reads every state; for checks and tests."""
    expected = scanned(store.scan())
    problems = []
    for kind in AUDIENCE_KINDS:
        names = set(store.audience_names(kind)) | {n for k, n in expected if k == kind}
        for name in sorted(names):
            want = expected.get((kind, name), set())
            listed = list(members(store, kind, name))
            got = set(listed)
            if (
                got != want
                or len(listed) != len(got)
                or store.audience_size(kind, name) != len(want)
            ):
                problems.append(
                    f"{kind} {name!r}: {len(got - want)} extra, {len(want - got)} missing, "
                    f"size {store.audience_size(kind, name)} (states say {len(want)})"
                )
    # The running sizes (GET /tiers) of a store that keeps them.
    get_meta, tallies = getattr(store, "get_meta", None), getattr(store, "tallies", None)
    if get_meta is not None and tallies is not None and get_meta(AUDIENCES_META):
        totals: dict[str, int] = tallies()
        counted = {n: v for n, v in totals.items() if v and n.startswith(SIZE_TALLY_PREFIX)}
        wanted = {size_tally(audience): len(ids) for audience, ids in expected.items()}
        if counted != wanted:
            problems.append(
                f"running sizes differ from the states: {len(counted)} vs {len(wanted)}"
            )
        customers = sum(1 for _ in store.scan())
        if totals.get(CUSTOMERS_TALLY, 0) != customers:
            problems.append(f"customers: {totals.get(CUSTOMERS_TALLY, 0)}, states say {customers}")
    return problems


def counted_sizes(store: object) -> Sizes | None:
    """Customers per tier and segment from the running sizes the commit keeps (one read of
    every shard's totals), or None when the store is not marked as keeping them (a store
    written before audiences, until ``tierstream audience --rebuild``): then GET /tiers
    and /segments scan the states instead."""
    get_meta = getattr(store, "get_meta", None)
    tallies = getattr(store, "tallies", None)
    if get_meta is None or tallies is None or not get_meta(AUDIENCES_META):
        return None
    started = time.monotonic()
    totals: dict[str, int] = tallies()
    customers = totals.get(CUSTOMERS_TALLY, 0)
    counts: dict[str, Counter[str | None]] = {"tier": Counter(), "segment": Counter()}
    for name, value in totals.items():
        if value and name.startswith(SIZE_TALLY_PREFIX):
            kind, _, audience = name.removeprefix(SIZE_TALLY_PREFIX).partition(":")
            if kind in counts:
                counts[kind][audience] += value
    for counter in counts.values():
        counter[None] = customers - sum(counter.values())  # customers with no tier/segment
    finished = time.monotonic()
    return Sizes(
        counts["tier"],
        counts["segment"],
        customers,
        datetime.now(UTC),
        finished,
        finished - started,
        method="counts",
    )


def mark_if_fresh(store: object) -> bool:
    """Mark an empty store as keeping its audiences (``AUDIENCES_META``): everything it
    will hold is written by commits that keep the sets and sizes, so GET /tiers can read
    the sizes from its first customer on. A store that holds anything (applied offsets or
    running totals) is left alone: only ``tierstream audience --rebuild`` marks it.
    Workers and backfills call this before their first commit; True: marked now."""
    get_meta = getattr(store, "get_meta", None)
    if get_meta is None or get_meta(AUDIENCES_META):
        return False
    partitions: int = getattr(store, "partitions", 0)
    offsets = getattr(store, "offsets", None)
    tallies = getattr(store, "tallies", None)
    if offsets is None or tallies is None:
        return False
    if any(offsets(shard) for shard in range(partitions)) or tallies():
        return False
    # No offsets and no totals: only states committed some other way could be there.
    scan = getattr(store, "scan", None)
    if scan is None or next(iter(scan()), None) is not None:
        return False
    setter = getattr(store, "set_meta_if_absent", None) or store.set_meta  # type: ignore[attr-defined]
    setter(AUDIENCES_META, b"1")
    return True
