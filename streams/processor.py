"""One shard's batch step: raw messages in, one atomic store commit out.

This is the whole of the worker's logic, without Kafka: the Faust agent hands it the
messages of one input partition, it parses them (bad ones become dead letters), skips
what the store says was already applied, applies the rest with the scoring core, and
commits states, offsets, queued tier changes and the next rescore moments in one step.
Running it again on the same messages after a crash changes nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from scoring.engine import Change, Outcome, Scorer
from scoring.events import Cause, DeadLetter, EngagementEvent, InputEvent, PurchaseEvent
from scoring.state import CustomerState
from streams.clock import Clock, EventClock
from streams.deadletters import RawMessage, Rejected, dead_letter, parse_message
from tierstream.stores.base import Batch, Lease, StateStore, record_changes


@dataclass
class StepResult:
    dead_letters: list[DeadLetter] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


# Outbox entry = destination byte + key + NUL + value. Customer ids cannot hold NUL
# (the event contract forbids control characters), so the split is unambiguous.
CHANGE_ENTRY = b"C"
DEAD_LETTER_ENTRY = b"D"


def encode_change(change: Change, emitted_at: datetime) -> bytes:
    value = json.dumps(change.to_json(emitted_at), separators=(",", ":")).encode("utf-8")
    return CHANGE_ENTRY + change.customer_id.encode("utf-8") + b"\x00" + value


def encode_dead_letter(letter: DeadLetter) -> bytes:
    return DEAD_LETTER_ENTRY + b"\x00" + letter.model_dump_json().encode("utf-8")


def decode_entry(entry: bytes) -> tuple[bytes, bytes | None, bytes]:
    """(destination, key, value) of an outbox entry."""
    kind, rest = entry[:1], entry[1:]
    key, _, value = rest.partition(b"\x00")
    return kind, key or None, value


class ShardProcessor:
    """Applies batches to one shard under a lease. Not thread-safe: one step at a time."""

    def __init__(
        self,
        store: StateStore,
        scorer: Scorer,
        lease: Lease,
        event_kinds: dict[str, type[PurchaseEvent] | type[EngagementEvent]],
        clock: Clock,
        *,
        max_future: timedelta = timedelta(days=1),
    ) -> None:
        self.store = store
        self.scorer = scorer
        self.lease = lease
        self.event_kinds = event_kinds
        self.clock = clock
        self.max_future = max_future
        self.event_time = isinstance(clock, EventClock)
        # next offset to apply per topic; the store is the truth, this is a cache of it
        self.offsets = store.offsets(lease.shard)

    def refresh(self) -> None:
        """Re-read the applied offsets: after a failed commit whose outcome is unknown."""
        self.offsets = self.store.offsets(self.shard)

    @property
    def shard(self) -> int:
        return self.lease.shard

    def process(self, messages: Sequence[RawMessage]) -> StepResult:
        result = StepResult()
        offsets: dict[str, int] = {}
        wall_now = None if self.event_time else self.clock.now()
        events: list[InputEvent] = []
        for message in messages:
            if message.offset < self.offsets.get(message.topic, 0):
                result.counts["already_applied"] += 1  # redelivered after a restart
                continue
            offsets[message.topic] = max(offsets.get(message.topic, 0), message.offset + 1)
            try:
                kind = self.event_kinds[message.topic]
                events.append(
                    parse_message(message, kind, self.scorer.config, wall_now, self.max_future)
                )
            except Rejected as reason:
                received = wall_now or datetime.now(UTC)
                result.dead_letters.append(dead_letter(message, reason, received))
                result.counts[f"dead_letter:{reason.kind}"] += 1
        if not offsets:
            return result
        states = self.store.load(self.shard, {e.customer_id for e in events})
        touched: dict[str, CustomerState] = {}
        for event in events:
            state = states.get(event.customer_id)
            if state is None:
                state = states[event.customer_id] = CustomerState(event.customer_id)
            if isinstance(self.clock, EventClock):
                self.clock.observe(event.occurred_at)
            now = self.clock.now() if wall_now is None else wall_now
            applied = self.scorer.apply(state, event, now)
            result.counts[applied.outcome.value] += 1
            if applied.outcome is not Outcome.DUPLICATE or applied.changes:
                touched[state.customer_id] = state
            result.changes.extend(applied.changes)
        self._commit(result, touched.values(), offsets, emitted_at=wall_now)
        return result

    def advance_due(self, limit: int = 1000) -> StepResult:
        """Re-score customers whose scheduled moment has passed (time-driven changes)."""
        result = StepResult()
        now = self.clock.now()
        due = self.store.due(self.shard, now.timestamp(), limit)
        if not due:
            return result
        states = self.store.load(self.shard, due)
        for state in states.values():
            result.changes.extend(self.scorer.advance(state, now))
        result.counts["rescored"] += len(states)
        # Customers that vanished (erased) are unscheduled by the commit below.
        schedule_only: dict[str, float | None] = {cid: None for cid in due if cid not in states}
        self._commit(
            result, states.values(), {}, schedule_only, emitted_at=None if self.event_time else now
        )
        return result

    def rescore(self, customer_ids: Sequence[str], cause: Cause, because: str) -> StepResult:
        """Re-score customers after a change of cut points or model (not of their data)."""
        result = StepResult()
        now = self.clock.now()
        states = self.store.load(self.shard, customer_ids)
        for state in states.values():
            result.changes.extend(self.scorer.rescore(state, now, cause, because))
        result.counts["rescored"] += len(states)
        self._commit(result, states.values(), {}, emitted_at=None if self.event_time else now)
        return result

    def _commit(
        self,
        result: StepResult,
        states: Iterable[CustomerState],
        offsets: dict[str, int],
        extra_schedule: dict[str, float | None] | None = None,
        *,
        emitted_at: datetime | None,
    ) -> None:
        batch = Batch(offsets=offsets, schedule=dict(extra_schedule or {}))
        for state in states:
            batch.states.append(state)
            moment = self.scorer.next_rescore_at(state)
            batch.schedule[state.customer_id] = None if moment is None else moment.timestamp()
        # The worker's own clock (a shifted wall clock says the rehearsed time); under the
        # event clock, real time, which is what latency is measured in.
        emitted_at = emitted_at or datetime.now(UTC)
        batch.changes = [encode_dead_letter(letter) for letter in result.dead_letters]
        batch.changes += [encode_change(change, emitted_at) for change in result.changes]
        for change in result.changes:
            result.counts[f"change:{change.cause}"] += 1
        # Recent-change history and running totals go in the same atomic commit.
        record_changes(batch, result.changes, result.counts)
        self.store.commit(self.lease, batch)
        self.offsets.update(offsets)
