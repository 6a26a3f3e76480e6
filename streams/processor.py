"""One shard's batch step: raw messages in, one atomic store commit out.

This is the whole of the worker's logic, without Kafka: the Faust agent hands it the
messages of one input partition, it parses them (bad ones become dead letters), skips
what the store says was already applied, applies the rest with the scoring core, and
commits states, offsets, queued tier changes and the next rescore moments in one step.
Running it again on the same messages after a crash changes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from scoring.accounts import ContributionUpdate, contact_updates, leave_update
from scoring.engine import Change, Outcome, Scorer
from scoring.events import Cause, DeadLetter, EngagementEvent, InputEvent, PurchaseEvent
from scoring.profiles import ProfileUpdate
from scoring.state import CustomerState
from streams.deadletters import RawMessage, Rejected, dead_letter, parse_message
from streams.erasing import erased_dead_letter, parse_erasure
from streams.learner import Learner
from streams.profiles_input import parse_profile
from tierstream.clock import Clock, EventClock
from tierstream.erasure import (
    ERASURE_HOOKS,
    Erasure,
    ErasureRequest,
    audit_record,
    customer_digest,
    make_marker,
    parse_marker,
)
from tierstream.stores.base import Batch, Lease, Placement, StateStore, placement_of
from tierstream.stores.commit_recipe import build_batch


@dataclass
class StepResult:
    dead_letters: list[DeadLetter] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    erasures: list[Erasure] = field(default_factory=list)
    # id() of changes kept out of the recent history (an erased customer's)
    unrecorded: set[int] = field(default_factory=set)
    # erased customers' states, whose learned contribution leaves the statistics
    forgotten: list[CustomerState] = field(default_factory=list)
    # updates of the contacts' B2B accounts, queued in the outbox with the changes
    contributions: list[ContributionUpdate] = field(default_factory=list)


# What the input topics carry: events of a kind, erasure requests, or profile updates.
InputKind = type[PurchaseEvent] | type[EngagementEvent] | type[ErasureRequest] | type[ProfileUpdate]
Item = InputEvent | ErasureRequest | ProfileUpdate


@dataclass(slots=True)
class Parsed:
    """A batch of one partition's messages, parsed: what is new, and what is bad."""

    events: list[Item]
    offsets: dict[str, int]  # topic -> next offset to apply after this batch
    result: StepResult
    emitted_at: datetime | None  # None: stamp real time at commit (event clock)
    origins: list[RawMessage] = field(default_factory=list)  # the message of each event

    @property
    def customer_ids(self) -> set[str]:
        return {event.customer_id for event in self.events}


@dataclass(slots=True)
class Step:
    """One computed atomic step: what it did (``result``) and what it writes (``batch``)."""

    result: StepResult
    batch: Batch


class ShardLogic:
    """One shard's steps as pure computation: messages and loaded states in, a ``Step`` out.

    No I/O here: the streaming worker awaits its (asynchronous) store around these calls,
    ``ShardProcessor`` below calls a synchronous store. Not thread-safe: one step at a time.
    """

    def __init__(
        self,
        scorer: Scorer,
        lease: Lease,
        offsets: dict[str, int],
        event_kinds: dict[str, InputKind],
        clock: Clock,
        *,
        max_future: timedelta = timedelta(days=1),
        salt: bytes = b"",
        erased_count: int = 0,
    ) -> None:
        self.scorer = scorer
        # The namespace's erasure salt, and whether the shard holds erasure markers at all
        # (only then are the ids of customers without a state looked up among them).
        self.salt = salt
        self.erased_count = erased_count
        self.lease = lease
        self.event_kinds = event_kinds
        self.clock = clock
        self.max_future = max_future
        self.event_time = isinstance(clock, EventClock)
        # next offset to apply per topic, as the store holds it after our last commit
        self.offsets = offsets
        # Behaviours learned from the stream (streams/learner.py); None: not learning.
        self.learner: Learner | None = None

    @property
    def shard(self) -> int:
        return self.lease.shard

    def parse(self, messages: Sequence[RawMessage]) -> Parsed:
        """Skip what was applied, turn the rest into events or dead letters."""
        result = StepResult()
        offsets: dict[str, int] = {}
        wall_now = None if self.event_time else self.clock.now()
        # Nothing may be dated beyond real time (plus the allowance) under either clock:
        # under the event clock one such event would move the shard's clock for good.
        latest = (wall_now or datetime.now(UTC)) + self.max_future
        events: list[Item] = []
        origins: list[RawMessage] = []
        applied = self.offsets
        for message in messages:
            if message.offset < applied.get(message.topic, 0):
                result.counts["already_applied"] += 1  # redelivered after a restart
                continue
            offsets[message.topic] = max(offsets.get(message.topic, 0), message.offset + 1)
            try:
                kind = self.event_kinds[message.topic]
                if issubclass(kind, ErasureRequest):
                    events.append(parse_erasure(message))
                elif issubclass(kind, ProfileUpdate):
                    events.append(parse_profile(message, latest))
                else:
                    events.append(parse_message(message, kind, self.scorer.config, latest))
                origins.append(message)
            except Rejected as reason:
                received = wall_now or datetime.now(UTC)
                result.dead_letters.append(dead_letter(message, reason, received))
                result.counts[f"dead_letter:{reason.kind}"] += 1
        return Parsed(events, offsets, result, wall_now, origins)

    def marker_digests(self, parsed: Parsed, states: dict[str, CustomerState]) -> dict[str, str]:
        """customer id -> salted digest, for the ids whose erasure markers ``apply`` needs:
        those without a stored state, when the shard has erased anyone (else none)."""
        if not self.erased_count:
            return {}
        return {
            cid: customer_digest(self.salt, cid) for cid in parsed.customer_ids if cid not in states
        }

    def apply(
        self,
        parsed: Parsed,
        states: dict[str, CustomerState],
        markers: dict[str, str] | None = None,
    ) -> Step:
        """Apply parsed events to the loaded ``states`` (changed in place). Only for a batch
        with something new (``parsed.offsets``): a batch of redeliveries has no step.
        ``markers``: customer id -> erasure marker, for erased ids without a state."""
        result = parsed.result
        before = _placements(states)
        touched: dict[str, CustomerState] = {}
        scorer, counts = self.scorer, result.counts
        markers = dict(markers or {})
        for index, event in enumerate(parsed.events):
            if isinstance(event, ErasureRequest):
                self._erase(event, states, touched, markers, result)
                continue
            state = states.get(event.customer_id)
            if state is None:
                prior = parse_marker(markers.get(event.customer_id))
                if prior is not None and prior[1]:
                    received = parsed.emitted_at or datetime.now(UTC)
                    letter = erased_dead_letter(parsed.origins[index], received)
                    result.dead_letters.append(letter)
                    counts["dead_letter:erased"] += 1
                    continue
                # A customer erased without suppression starts afresh, its version
                # numbers (and so its change event ids) continuing after the erasure's.
                version = prior[0] if prior is not None else 0
                state = CustomerState(event.customer_id, version=version)
                states[event.customer_id] = state
            if isinstance(event, ProfileUpdate):
                # A trait update does not move the event clock: its time is when the
                # profile was edited, not when the customer did something.
                applied = scorer.apply_profile(state, event, self.moment(parsed))
                # Counted apart: "applied" and "duplicate" count customer events.
                counts[f"profile:{applied.outcome.value}"] += 1
                if applied.outcome is not Outcome.DUPLICATE or applied.changes:
                    touched[state.customer_id] = state
                result.changes.extend(applied.changes)
                continue
            applied = scorer.apply(state, event, self.moment(parsed, event.occurred_at))
            counts[applied.outcome.value] += 1
            if applied.outcome is not Outcome.DUPLICATE or applied.changes:
                touched[state.customer_id] = state
            result.changes.extend(applied.changes)
            if event.account_id is not None or state.account is not None:
                # The contact's account link is in the state this step commits, and its
                # updates in the same commit's outbox: neither without the other.
                result.contributions += contact_updates(state, event, applied.outcome)
        return self._step(
            result, touched.values(), parsed.offsets, emitted_at=parsed.emitted_at, before=before
        )

    def moment(self, parsed: Parsed, occurred_at: datetime | None = None) -> datetime:
        """The "now" an input of ``parsed`` is applied at: under the event clock, the
        latest event time seen, moved first by the input's own ``occurred_at`` (inputs
        that are not events pass none); under the wall clock, the batch's arrival."""
        clock = self.clock
        if isinstance(clock, EventClock):
            if occurred_at is not None:
                clock.observe(occurred_at)
            return clock.now()
        return parsed.emitted_at or clock.now()

    def _erase(
        self,
        request: ErasureRequest,
        states: dict[str, CustomerState],
        touched: dict[str, CustomerState],
        markers: dict[str, str],
        result: StepResult,
    ) -> None:
        """Apply one erasure request: drop the state, emit the final change, mark the id."""
        cid = request.customer_id
        state = states.pop(cid, None)
        touched.pop(cid, None)
        prior = parse_marker(markers.get(cid))
        change = self.scorer.erase(state, request.requested_at) if state is not None else None
        version = state.version if state is not None else (prior[0] if prior else 0)
        suppressed = request.suppress or (prior is not None and prior[1])
        marker = markers[cid] = make_marker(version, suppressed)
        digest = customer_digest(self.salt, cid)
        audit = audit_record(request, digest, self.salt, version, state is not None)
        erasure = Erasure(cid, digest, marker, audit)
        for hook in ERASURE_HOOKS:
            hook(state, erasure)
        if state is not None and state.learned is not None:
            result.forgotten.append(state)
        if state is not None:  # an erased contact leaves its account
            update = leave_update(state, request.requested_at, f"contact {cid} erased")
            if update is not None:
                result.contributions.append(update)
        # The erasure deletes the history key before the commit writes history: this
        # batch's earlier changes of the customer must not recreate it.
        result.unrecorded.update(id(c) for c in result.changes if c.customer_id == cid)
        if change is not None:
            result.changes.append(change)
            result.unrecorded.add(id(change))
        result.erasures.append(erasure)
        result.counts["erased"] += 1

    def advance(self, due: Sequence[str], states: dict[str, CustomerState]) -> Step:
        """Re-score customers whose scheduled moment has passed (time-driven changes)."""
        result = StepResult()
        before = _placements(states)
        now = self.clock.now()
        for state in states.values():
            result.changes.extend(self.scorer.advance(state, now))
        result.counts["rescored"] += len(states)
        # Customers that vanished (erased) are unscheduled by the commit.
        vanished = [cid for cid in due if cid not in states]
        emitted_at = None if self.event_time else now
        return self._step(
            result, states.values(), {}, vanished, emitted_at=emitted_at, before=before
        )

    def rescore(self, states: dict[str, CustomerState], cause: Cause, because: str) -> Step:
        """Re-score customers after a change of cut points or model (not of their data)."""
        result = StepResult()
        before = _placements(states)
        now = self.clock.now()
        for state in states.values():
            result.changes.extend(self.scorer.rescore(state, now, cause, because))
        result.counts["rescored"] += len(states)
        emitted_at = None if self.event_time else now
        return self._step(result, states.values(), {}, emitted_at=emitted_at, before=before)

    def committed(self, step: Step) -> None:
        """Record that ``step`` is in the store: its offsets are now the applied ones."""
        self.offsets.update(step.batch.offsets)
        self.erased_count += len(step.batch.erasures)

    def _step(
        self,
        result: StepResult,
        states: Iterable[CustomerState],
        offsets: dict[str, int],
        unschedule: Iterable[str] = (),
        *,
        emitted_at: datetime | None,
        before: dict[str, Placement],
    ) -> Step:
        # The worker's own clock (a shifted wall clock says the rehearsed time); under the
        # event clock, real time, which is what latency is measured in.
        emitted_at = emitted_at or datetime.now(UTC)
        for change in result.changes:
            result.counts[f"change:{change.cause}"] += 1
        learner = self.learner

        def learn(batch: Batch) -> None:
            # Learned statistics: same commit, same exactly-once (streams/learner.py).
            assert learner is not None
            if result.forgotten:  # erased customers: out of the statistics in this step
                learner.forget(result.forgotten, batch.tallies)
            learner.learn(self.scorer, batch.states, batch.tallies, result.counts["applied"])

        batch = build_batch(
            offsets=offsets,
            applied=self.offsets,
            states=states,
            next_rescore_at=self.scorer.next_rescore_at,
            unschedule=unschedule,
            dead_letters=result.dead_letters,
            changes=result.changes,
            contributions=result.contributions,
            emitted_at=emitted_at,
            counts=result.counts,
            erasures=result.erasures,
            unrecorded=result.unrecorded,
            before=before,
            learn=None if learner is None else learn,
        )
        return Step(result, batch)


def _placements(states: dict[str, CustomerState]) -> dict[str, Placement]:
    """The placements of the states as loaded, before a step changes them in place."""
    return {cid: placement_of(state) for cid, state in states.items()}


class ShardProcessor(ShardLogic):
    """``ShardLogic`` with a synchronous store: each call loads, computes and commits."""

    def __init__(
        self,
        store: StateStore,
        scorer: Scorer,
        lease: Lease,
        event_kinds: dict[str, InputKind],
        clock: Clock,
        *,
        max_future: timedelta = timedelta(days=1),
        salt: bytes = b"",
    ) -> None:
        super().__init__(
            scorer,
            lease,
            store.offsets(lease.shard),
            event_kinds,
            clock,
            max_future=max_future,
            salt=salt,
            erased_count=store.erased_count(lease.shard),
        )
        self.store = store

    def process(self, messages: Sequence[RawMessage]) -> StepResult:
        parsed = self.parse(messages)
        if not parsed.offsets:
            return parsed.result
        states = self.store.load(self.shard, parsed.customer_ids)
        return self._commit(self.apply(parsed, states, self._markers(parsed, states)))

    def _markers(self, parsed: Parsed, states: dict[str, CustomerState]) -> dict[str, str]:
        digests = self.marker_digests(parsed, states)
        if not digests:
            return {}
        found = self.store.erased(self.shard, list(digests.values()))
        return {cid: m.decode() for cid, m in zip(digests, found, strict=True) if m is not None}

    def advance_due(self, limit: int = 1000) -> StepResult:
        due = self.store.due(self.shard, self.clock.now().timestamp(), limit)
        if not due:
            return StepResult()
        return self._commit(self.advance(due, self.store.load(self.shard, due)))

    def _commit(self, step: Step) -> StepResult:
        self.store.commit(self.lease, step.batch)
        self.committed(step)
        return step.result
