"""Events in event-time order without holding them: an external merge sort.

The replay and the backfill apply a history in event-time order (ties in file order: a
stable sort), as the worker sees a history produced in that order. A file's events are
read in chunks of ``CHUNK_EVENTS``; a chunk is sorted in memory and, when the file has
more than one, spilled to a temporary file as compact tuples (pickle); the sorted runs are
then merged. Memory is one chunk while reading and one block per run while merging,
whatever the size of the file. A file that fits one chunk is never spilled, and a list
(already in memory) is simply sorted.

The key is ``(occurred_at, position in the file)``, so the order is exactly that of a
stable in-memory sort by ``occurred_at`` (the order the replay has always used), and it
is the same on every run over the same file: the backfill's resume relies on it.
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import IO, Any

from scoring.events import EngagementEvent, InputEvent, PurchaseEvent

# Events per sorted run: about 40 MB of compact tuples, and few runs to merge for
# millions of events (5 million events: 50 runs).
CHUNK_EVENTS = 100_000
# Records per pickled block of a run (one block per run is in memory while merging).
BLOCK = 2_000
# Runs merged at once: past this many, the runs so far are merged into one first, so the
# merge's memory (one block per run) stays bounded however long the file.
FAN_IN = 64

Packed = tuple[datetime, int, tuple[Any, ...]]


def pack(event: InputEvent) -> tuple[Any, ...]:
    """The event as a plain tuple: pickles several times faster than the model."""
    if isinstance(event, PurchaseEvent):
        return (
            0,
            event.event_id,
            event.customer_id,
            event.occurred_at,
            event.amount,
            event.currency,
            event.order_id,
            event.kind,
            event.attributes or None,
            event.account_id,
        )
    return (
        1,
        event.event_id,
        event.customer_id,
        event.occurred_at,
        event.kind,
        event.weight,
        event.account_id,
    )


def unpack(packed: tuple[Any, ...]) -> InputEvent:
    """The event again, without re-validation (it was validated when read)."""
    if packed[0] == 0:
        _, event_id, customer_id, occurred_at, amount, currency, order_id, kind, attrs, account = (
            packed
        )
        return PurchaseEvent.model_construct(
            event_id=event_id,
            customer_id=customer_id,
            occurred_at=occurred_at,
            amount=amount,
            currency=currency,
            order_id=order_id,
            kind=kind,
            attributes=attrs or {},
            account_id=account,
        )
    _, event_id, customer_id, occurred_at, kind, weight, account = packed
    weight = weight if isinstance(weight, Decimal) else Decimal(weight)
    return EngagementEvent.model_construct(
        event_id=event_id,
        customer_id=customer_id,
        occurred_at=occurred_at,
        kind=kind,
        weight=weight,
        account_id=account,
    )


class TimeOrdered:
    """Iterate ``events`` in event-time order (stable). ``count`` is known once iteration
    has begun (the input is read whole before the first event comes out)."""

    def __init__(self, events: Iterable[InputEvent], *, chunk_events: int | None = None) -> None:
        self._events = events
        self._chunk = chunk_events or CHUNK_EVENTS
        self.count: int | None = None
        self.runs = 0  # sorted runs spilled to disk (0: sorted in memory)

    def __iter__(self) -> Iterator[InputEvent]:
        if isinstance(self._events, list):
            # Already in memory (the caller holds it): a stable sort of the objects costs
            # nothing more, and spares packing them.
            self.count = len(self._events)
            yield from sorted(self._events, key=_occurred_at)
            return
        runs: list[IO[bytes]] = []
        # Events are kept packed: about half the memory of the models.
        chunk: list[Packed] = []
        position = 0
        try:
            for event in self._events:
                chunk.append((event.occurred_at, position, pack(event)))
                position += 1
                if len(chunk) >= self._chunk:
                    runs.append(_spill(chunk))
                    chunk = []
                    if len(runs) >= FAN_IN:
                        merged = _write_run(heapq.merge(*(_read(r) for r in runs), key=_key))
                        for run in runs:
                            run.close()
                        runs = [merged]
            self.count = position
            self.runs = len(runs)
            if not runs:
                chunk.sort(key=_key)
                for _, _, packed in chunk:
                    yield unpack(packed)
                return
            if chunk:
                runs.append(_spill(chunk))
                self.runs = len(runs)
            chunk = []
            for _, _, packed in heapq.merge(*(_read(run) for run in runs), key=_key):
                yield unpack(packed)
        finally:
            for run in runs:
                run.close()


def _occurred_at(event: InputEvent) -> datetime:
    return event.occurred_at


def _key(item: tuple[datetime, int, Any]) -> tuple[datetime, int]:
    return item[0], item[1]


def _spill(chunk: list[Packed]) -> IO[bytes]:
    chunk.sort(key=_key)
    return _write_run(chunk)


def _write_run(records: Iterable[Packed]) -> IO[bytes]:
    """A sorted run on disk, in pickled blocks of ``BLOCK`` records."""
    run = tempfile.TemporaryFile(prefix="tierstream-sort-")
    block: list[Packed] = []
    for record in records:
        block.append(record)
        if len(block) >= BLOCK:
            pickle.dump(block, run, protocol=pickle.HIGHEST_PROTOCOL)
            block = []
    if block:
        pickle.dump(block, run, protocol=pickle.HIGHEST_PROTOCOL)
    run.seek(0)
    return run


def _read(run: IO[bytes]) -> Iterator[Packed]:
    # Our own temporary file, written just above: not untrusted input.
    while True:
        try:
            block = pickle.load(run)  # noqa: S301
        except EOFError:
            return
        yield from block
