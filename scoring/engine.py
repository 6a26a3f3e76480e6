"""The engine: apply an event (or the passage of time) to a customer, explain the change.

``Scorer.apply(state, event, now)`` is the one function both the embedded replay and the
streaming worker call. It first brings the customer forward to ``now`` (emitting any
time-driven changes at the exact moment they fell due), then folds the event into the
rolling day totals and re-scores. Because inactivity changes are always emitted at their
own moment and before the event that follows them, a customer's chain of changes and its
version numbers depend only on the events, never on when a timer happened to fire.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol

from scoring.config import ScoringConfig
from scoring.days import day_start, day_to_date, utc_day
from scoring.events import Cause, EngagementEvent, InputEvent, PurchaseEvent, TierChange
from scoring.rules import classify, explain
from scoring.scores import Scale, Thresholds
from scoring.state import CustomerState, DayTotals, Moves, Scores, event_digest

# Fixed namespace so that the same change of the same customer always gets the same id.
CHANGE_NAMESPACE = uuid.UUID("5d1f0a4e-3c57-4f7e-9a51-2f2b6c0e7a11")
_NAMESPACE_BYTES = CHANGE_NAMESPACE.bytes
_ZERO = Decimal(0)


class Outcome(Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # this event id was already applied
    OUTSIDE_WINDOW = "outside_window"  # too old to count; only first/last purchase may move


@dataclass(frozen=True, slots=True)
class Change:
    """A tier/segment change as the engine produces it (cheap to build on the hot path).

    ``to_json()`` gives the published form; ``to_model()`` the validated ``TierChange``.
    """

    event_id: str
    customer_id: str
    version: int
    previous_tier: str | None
    new_tier: str | None
    previous_segment: str | None
    new_segment: str | None
    cause: Cause
    reason: str
    recency_days: int | None
    frequency: int
    monetary: Decimal
    r: int | None
    f: int | None
    m: int | None
    occurred_at: datetime
    # Behavioural segment labels (None while no segment model is in use).
    previous_behaviour: str | None = None
    new_behaviour: str | None = None

    def to_json(self, emitted_at: datetime | None = None) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "customer_id": self.customer_id,
            "version": self.version,
            "previous_tier": self.previous_tier,
            "new_tier": self.new_tier,
            "previous_segment": self.previous_segment,
            "new_segment": self.new_segment,
            "cause": self.cause,
            "reason": self.reason,
            "rfm": {
                "recency_days": self.recency_days,
                "frequency": self.frequency,
                "monetary": str(self.monetary),
                "r": self.r,
                "f": self.f,
                "m": self.m,
            },
            "occurred_at": self.occurred_at.isoformat(),
            "emitted_at": None if emitted_at is None else emitted_at.isoformat(),
            "previous_behaviour": self.previous_behaviour,
            "new_behaviour": self.new_behaviour,
        }

    def to_model(self, emitted_at: datetime | None = None) -> TierChange:
        return TierChange.model_validate(self.to_json(emitted_at))


@dataclass(frozen=True, slots=True)
class ApplyResult:
    outcome: Outcome
    changes: list[Change] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Values:
    """A customer's raw RFM figures at one UTC day."""

    recency_days: int | None
    frequency: int
    monetary: Decimal
    engagement: dict[str, Decimal]

    @property
    def engagement_total(self) -> Decimal:
        return sum(self.engagement.values(), _ZERO)


@dataclass(frozen=True, slots=True)
class _EventReason:
    """The event part of a reason, put into words only when a change is actually emitted."""

    event: InputEvent
    outcome: Outcome
    window: int | None

    def __str__(self) -> str:
        e = self.event
        when = e.occurred_at.date().isoformat()
        if isinstance(e, PurchaseEvent):
            text = f"{e.kind} of {e.amount} {e.currency} on {when}"
        else:
            text = f"{e.kind} (weight {e.weight}) on {when}"
        if self.outcome is Outcome.OUTSIDE_WINDOW:
            text += f", older than the {self.window}-day window"
        return text


class BehaviourModel(Protocol):
    """A frozen behavioural segmentation, versioned (``tierstream.segments`` adapts the
    published snapshot of ``models``). Pure and deterministic: the same values and version
    give the same segment in every process."""

    @property
    def version(self) -> int: ...

    def assign(self, values: Values) -> tuple[int, str]:
        """(segment id, label) of a customer with these figures; ids are stable across
        versions, labels describe the segment's current centroid."""
        ...


class AsOfError(ValueError):
    """Raised for an as-of time earlier than the state has already been brought to."""


def change_event_id(customer_id: str, version: int) -> str:
    """uuid5(CHANGE_NAMESPACE, "<customer_id>\\0<version>"), computed without uuid's overhead."""
    h = hashlib.sha1(  # noqa: S324 - uuid5 is defined on SHA-1; an id, not a secret
        _NAMESPACE_BYTES + f"{customer_id}\x00{version}".encode(), usedforsecurity=False
    ).hexdigest()
    variant = "89ab"[int(h[16], 16) & 0x3]  # RFC 4122 variant bits
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


class Scorer:
    """Scores customers under one configuration and one set of cut points."""

    def __init__(
        self,
        config: ScoringConfig,
        thresholds: Thresholds | None = None,
        behaviour: BehaviourModel | None = None,
    ) -> None:
        self.config = config
        # Assigns the behavioural segment whenever the customer is re-scored (None: off).
        self.behaviour = behaviour
        self.thresholds = thresholds or Thresholds.fixed(config)
        self.window = config.window_days
        s, t = config.scores, self.thresholds
        self._scales = (
            Scale.build(t.recency, s.recency, higher_is_better=False, integer_input=True),
            Scale.build(t.frequency, s.frequency, higher_is_better=True, integer_input=True),
            Scale.build(t.monetary, s.monetary, higher_is_better=True, relative=True),
            Scale.build(t.engagement, s.engagement, higher_is_better=True),
        )
        # R drops the day after recency passes a cut (plus margin): offsets from the last purchase.
        self._recency_offsets = tuple(
            math.floor(cut + s.recency.hysteresis) + 1 for cut in t.recency if cut.is_finite()
        )
        self._placements: dict[Scores, tuple[str, str]] = {}
        self._explanations: dict[Scores, tuple[str, str]] = {}

    def with_thresholds(self, thresholds: Thresholds) -> Scorer:
        return Scorer(self.config, thresholds, self.behaviour)

    def with_behaviour(self, behaviour: BehaviourModel | None) -> Scorer:
        return Scorer(self.config, self.thresholds, behaviour)

    # ----------------------------------------------------------------- events
    def apply(self, state: CustomerState, event: InputEvent, now: datetime) -> ApplyResult:
        """Fold ``event`` into ``state`` (mutated in place) as of ``now``; return the changes."""
        changes = self.advance(state, now)
        today = state.clock_day
        assert today is not None  # advance() always sets the clock
        outcome = self._incorporate(state, event, today)
        if outcome is Outcome.DUPLICATE:
            return ApplyResult(outcome, changes)
        cause: Cause = event.kind if isinstance(event, PurchaseEvent) else "engagement"
        changes.extend(
            self._rescore(
                state, today, event.occurred_at, cause, _EventReason(event, outcome, self.window)
            )
        )
        return ApplyResult(outcome, changes)

    def advance(self, state: CustomerState, now: datetime) -> list[Change]:
        """Bring ``state`` forward to ``now``, emitting time-driven changes at their moment."""
        target = utc_day(now)
        if state.clock_day is None:
            state.clock_day = target
            return []
        if target <= state.clock_day:
            return []
        changes: list[Change] = []
        previous: Values | None = None
        for day, scores, current in self._walk(state, target):
            because = _InactivityReason(
                previous or self.values(state, state.clock_day), current, self.window
            )
            changes.extend(
                self._record(state, scores, current, day_start(day), "inactivity", because)
            )
            previous = current
        state.clock_day = target
        self._prune(state)
        return changes

    def rescore(
        self, state: CustomerState, now: datetime, cause: Cause, because: str
    ) -> list[Change]:
        """Re-score after a change of cut points or model (not of the customer's own data)."""
        changes = self.advance(state, now)
        assert state.clock_day is not None
        changes.extend(self._rescore(state, state.clock_day, now, cause, because))
        return changes

    def erase(self, state: CustomerState, now: datetime) -> Change | None:
        """The final change of a customer whose data is erased on request."""
        if state.tier is None and state.segment is None and state.behaviour is None:
            return None
        state.version += 1
        change = Change(
            change_event_id(state.customer_id, state.version),
            state.customer_id,
            state.version,
            state.tier,
            None,
            state.segment,
            None,
            "erasure",
            "customer data erased on request",
            None,
            0,
            _ZERO,
            None,
            None,
            None,
            now,
            _label(state.behaviour),
            None,
        )
        state.tier = state.segment = None
        state.behaviour = None
        return change

    # ------------------------------------------------------------------- time
    def next_change_at(self, state: CustomerState) -> datetime | None:
        """When the tier or segment would next change with no new event (None: never)."""
        if state.clock_day is None:
            return None
        current = (state.tier, state.segment)
        for day, scores, _ in self._walk(state, None):
            if self._classify(scores) != current:
                return day_start(day)
        return None

    def next_rescore_at(self, state: CustomerState) -> datetime | None:
        """When any score would next move with no new event (None: never)."""
        for day, _, _ in self._walk(state, None):
            return day_start(day)
        return None

    # ---------------------------------------------------------------- queries
    def values(self, state: CustomerState, day: int) -> Values:
        lo = None if self.window is None else day - self.window
        frequency = 0
        monetary = _ZERO
        for d, totals in state.days.items():
            if d <= day and (lo is None or d > lo):
                frequency += totals.purchases
                monetary += totals.net
        engagement: dict[str, Decimal] = {}
        for d, kinds in state.engagement_days.items() if state.engagement_days else ():
            if d <= day and (lo is None or d > lo):
                for kind, weight in kinds.items():
                    engagement[kind] = engagement.get(kind, _ZERO) + weight
        recency = None
        if state.last_purchase_at is not None:
            # An event dated slightly in the future (clock skew) counts as today.
            recency = max(0, day - utc_day(state.last_purchase_at))
        return Values(recency, frequency, monetary, engagement)

    def record(self, state: CustomerState, as_of: datetime | None = None) -> dict[str, Any]:
        """The published state record (SPEC: state record) as of ``as_of`` (default: its clock).

        ``state`` itself is not changed: a copy is brought forward.
        """
        view = state.copy()
        if as_of is not None:
            if view.clock_day is not None and utc_day(as_of) < view.clock_day:
                raise AsOfError(
                    f"customer {state.customer_id} has already been scored as of "
                    f"{day_to_date(view.clock_day)}; an earlier as-of cannot be exact"
                )
            self.advance(view, as_of)
        day = view.clock_day if view.clock_day is not None else 0
        values = self.values(view, day)
        return {
            "customer_id": view.customer_id,
            "frequency": values.frequency,
            "monetary": str(values.monetary),
            "recency_days": values.recency_days,
            "last_purchase_at": _iso(view.last_purchase_at),
            "first_purchase_at": _iso(view.first_purchase_at),
            "r": view.scores.r if view.scores else None,
            "f": view.scores.f if view.scores else None,
            "m": view.scores.m if view.scores else None,
            "tier": view.tier,
            "segment": view.segment,
            "engagement": {k: str(v) for k, v in sorted(values.engagement.items())},
            "version": view.version,
            "as_of": day_to_date(day).isoformat(),
        }

    def explain(self, state: CustomerState) -> str:
        """Why the customer is where they are now."""
        scores = state.scores
        if scores is None:
            return "no purchase yet: not placed in a tier or segment"
        tier_rule, segment_rule = self._explain(scores)
        return f"{tier_rule}; {segment_rule}"

    # --------------------------------------------------------------- internals
    def _incorporate(self, state: CustomerState, event: InputEvent, today: int) -> Outcome:
        digest = event_digest(event.event_id)
        if digest in state.seen:
            return Outcome.DUPLICATE
        day = utc_day(event.occurred_at)
        in_window = self.window is None or day > today - self.window
        if isinstance(event, PurchaseEvent):
            if event.kind == "purchase":
                at = event.occurred_at
                if state.first_purchase_at is None or at < state.first_purchase_at:
                    state.first_purchase_at = at
                if state.last_purchase_at is None or at > state.last_purchase_at:
                    state.last_purchase_at = at
                    state.cached_moves = None
            if not in_window:
                return Outcome.OUTSIDE_WINDOW
            amount = self.config.to_base(event.amount, event.currency)
            totals = state.days.get(day)
            if totals is None:
                totals = state.days[day] = DayTotals()
            if event.kind == "purchase":
                totals.purchases += 1
                totals.net += amount
            else:
                totals.net -= amount
        else:
            assert isinstance(event, EngagementEvent)
            if not in_window:
                return Outcome.OUTSIDE_WINDOW
            kinds = state.engagement_days.setdefault(day, {})
            kinds[event.kind] = kinds.get(event.kind, _ZERO) + event.weight
        state.seen[digest] = day
        state.cached_moves = None
        return Outcome.APPLIED

    def _score_values(self, values: Values, previous: Scores | None) -> Scores | None:
        if values.recency_days is None:
            return None  # no purchase ever: not placed yet
        r, f, m, e = self._scales
        if previous is None:
            return Scores(
                r.score(values.recency_days, None),
                f.score(values.frequency, None),
                m.score(values.monetary, None),
                e.score(values.engagement_total, None),
            )
        return Scores(
            r.score(values.recency_days, previous.r),
            f.score(values.frequency, previous.f),
            m.score(values.monetary, previous.m),
            e.score(values.engagement_total, previous.e),
        )

    def _classify(self, scores: Scores | None) -> tuple[str | None, str | None]:
        if scores is None:
            return (None, None)
        cached = self._placements.get(scores)
        if cached is None:
            cached = self._placements[scores] = classify(self.config, scores)
        return cached

    def _explain(self, scores: Scores) -> tuple[str, str]:
        cached = self._explanations.get(scores)
        if cached is None:
            cached = self._explanations[scores] = explain(self.config, scores)
        return cached

    def _candidate_days(self, state: CustomerState) -> list[int]:
        """Days on which a score input changes with no new event, ascending (may be past).

        They depend only on the day totals and the last purchase, so they are cached on the
        state until an event changes those (the cache is keyed by this scorer).
        """
        cached = state.cached_moves
        if cached is not None and cached.owner is self:
            return cached.days
        days: set[int] = set()
        if state.last_purchase_at is not None:
            last = utc_day(state.last_purchase_at)
            days.update(last + offset for offset in self._recency_offsets)
        for bucket_days in (state.days, state.engagement_days):
            for d in bucket_days:
                days.add(d)  # a future-dated bucket starts counting on its day
                if self.window is not None:
                    days.add(d + self.window)  # ... and stops counting when it leaves
        ordered = sorted(days)
        state.cached_moves = Moves(self, ordered)
        return ordered

    def _walk(
        self, state: CustomerState, until: int | None
    ) -> Iterator[tuple[int, Scores, Values]]:
        """Each future day (up to ``until``) on which the scores move: new scores and values."""
        clock = state.clock_day
        if clock is None:
            return
        previous = state.scores
        candidates = self._candidate_days(state)
        cache = state.cached_moves
        for day in candidates:
            if day <= clock:
                continue
            if until is not None and day > until:
                return
            pending = cache.pending if cache is not None else None
            if pending is not None and pending[0] == day and pending[1] == previous:
                moved: Scores | None = pending[2]
                values = pending[3]
            else:
                values = self.values(state, day)
                moved = self._score_values(values, previous)
                if moved is None or moved == previous:
                    continue
                if cache is not None and cache.pending is None:
                    # Remember the first move: the timer that fires for it needs it again.
                    cache.pending = (day, previous, moved, values)
            assert moved is not None
            yield day, moved, values
            previous = moved

    def _rescore(
        self, state: CustomerState, day: int, moment: datetime, cause: Cause, because: object
    ) -> list[Change]:
        values = self.values(state, day)
        scores = self._score_values(values, state.scores)
        if scores is None:
            return []
        return self._record(state, scores, values, moment, cause, because)

    def _record(
        self,
        state: CustomerState,
        scores: Scores,
        values: Values,
        moment: datetime,
        cause: Cause,
        because: object,
    ) -> list[Change]:
        before = state.scores
        state.scores = scores
        tier, segment = self._classify(scores)
        behaviour = state.behaviour
        if self.behaviour is not None:
            assigned = self.behaviour.assign(values)
            if behaviour is not None and assigned[0] == behaviour[0]:
                # Same segment, perhaps described anew by a newer model: no change event.
                state.behaviour = behaviour = assigned
            else:
                behaviour = assigned
        if (tier, segment) == (state.tier, state.segment) and behaviour == state.behaviour:
            return []
        tier_rule, segment_rule = self._explain(scores)
        moves = _score_moves(before, scores)
        parts = [str(because), moves, tier_rule, segment_rule]
        if behaviour != state.behaviour and self.behaviour is not None:
            parts.append(
                f"behaviour: {_label(behaviour)} (segment model v{self.behaviour.version})"
            )
        reason = "; ".join(part for part in parts if part)
        state.version += 1
        change = Change(
            change_event_id(state.customer_id, state.version),
            state.customer_id,
            state.version,
            state.tier,
            tier,
            state.segment,
            segment,
            cause,
            reason,
            values.recency_days,
            values.frequency,
            values.monetary,
            scores.r,
            scores.f,
            scores.m,
            moment,
            _label(state.behaviour),
            _label(behaviour),
        )
        state.tier, state.segment, state.behaviour = tier, segment, behaviour
        return [change]

    def _prune(self, state: CustomerState) -> None:
        """Drop day totals and event digests whose day can never count again."""
        if self.window is None or state.clock_day is None:
            return
        horizon = state.clock_day - self.window
        for d in [d for d in state.days if d <= horizon]:
            del state.days[d]
        for d in [d for d in state.engagement_days if d <= horizon]:
            del state.engagement_days[d]
        if state.seen:
            state.seen = {k: d for k, d in state.seen.items() if d > horizon}


def _score_moves(before: Scores | None, after: Scores) -> str:
    if before is None:
        return f"first scored R{after.r} F{after.f} M{after.m} E{after.e}"
    moves = [
        f"{name.upper()} {getattr(before, name)}→{getattr(after, name)}"
        for name in ("r", "f", "m", "e")
        if getattr(before, name) != getattr(after, name)
    ]
    return ", ".join(moves)


@dataclass(frozen=True, slots=True)
class _InactivityReason:
    before: Values
    after: Values
    window: int | None

    def __str__(self) -> str:
        before, after = self.before, self.after
        parts = []
        if after.recency_days is not None:
            parts.append(f"no purchase for {after.recency_days} days")
        if after.frequency < before.frequency or after.monetary != before.monetary:
            parts.append(
                f"purchases older than {self.window} days left the window "
                f"(frequency {before.frequency}→{after.frequency}, "
                f"monetary {before.monetary}→{after.monetary})"
            )
        return ", ".join(parts)


def _label(behaviour: tuple[int, str] | None) -> str | None:
    return None if behaviour is None else behaviour[1]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
