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
import itertools
import math
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, NamedTuple, Protocol

from scoring.config import ScoringConfig
from scoring.criteria import TraitScore, format_trait, kind_weighted_total, trait_scores
from scoring.days import day_start, day_to_date, utc_day
from scoring.events import Cause, EngagementEvent, InputEvent, PurchaseEvent, TierChange
from scoring.profiles import ProfileUpdate, canonical
from scoring.rules import classify, explain
from scoring.scores import Scale, Thresholds
from scoring.state import Archived, CustomerState, DayTotals, Moves, Scores, event_digest

# Fixed namespace so that the same change of the same customer always gets the same id.
CHANGE_NAMESPACE = uuid.UUID("5d1f0a4e-3c57-4f7e-9a51-2f2b6c0e7a11")
_NAMESPACE_BYTES = CHANGE_NAMESPACE.bytes
_ZERO = Decimal(0)


class Outcome(Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # this event id was already applied
    OUTSIDE_WINDOW = "outside_window"  # too old to count; only first/last purchase may move
    STALE = "stale"  # a profile update older than the traits held (scoring/profiles.py)


class Change:
    """A tier/segment change as the engine produces it (cheap to build on the hot path).

    ``to_json()`` gives the published form; ``to_model()`` the validated ``TierChange``.
    Treat it as immutable. The event id and the reason text are derived on first read
    (``event_id=None``; ``reason`` any object whose ``str()`` is the text): a replay emits
    ~170k changes, and a uuid5 and a sentence for each as it happened cost more than the
    scoring itself. Both are pure functions of what the change already holds.
    """

    __slots__ = (
        "_event_id",
        "customer_id",
        "version",
        "previous_tier",
        "new_tier",
        "previous_segment",
        "new_segment",
        "cause",
        "_reason",
        "recency_days",
        "frequency",
        "monetary",
        "r",
        "f",
        "m",
        "occurred_at",
        "previous_behaviour",
        "new_behaviour",
    )

    # Keyword-only: eighteen fields, several of the same type, are too many to pass by
    # position. ``event_id`` None: derived from customer id and version on first read.
    def __init__(
        self,
        *,
        customer_id: str,
        version: int,
        previous_tier: str | None,
        new_tier: str | None,
        previous_segment: str | None,
        new_segment: str | None,
        cause: Cause,
        reason: object,
        recency_days: int | None,
        frequency: int,
        monetary: Decimal,
        r: int | None,
        f: int | None,
        m: int | None,
        occurred_at: datetime,
        # Behaviour segment labels (None while no behaviour model is in use).
        previous_behaviour: str | None = None,
        new_behaviour: str | None = None,
        event_id: str | None = None,
    ) -> None:
        self._event_id = event_id
        self.customer_id = customer_id
        self.version = version
        self.previous_tier = previous_tier
        self.new_tier = new_tier
        self.previous_segment = previous_segment
        self.new_segment = new_segment
        self.cause = cause
        self._reason = reason
        self.recency_days = recency_days
        self.frequency = frequency
        self.monetary = monetary
        self.r = r
        self.f = f
        self.m = m
        self.occurred_at = occurred_at
        self.previous_behaviour = previous_behaviour
        self.new_behaviour = new_behaviour

    @property
    def event_id(self) -> str:
        """Deterministic: uuid5 of the customer and the version (see ``change_event_id``)."""
        event_id = self._event_id
        if event_id is None:
            event_id = self._event_id = change_event_id(self.customer_id, self.version)
        return event_id

    @property
    def reason(self) -> str:
        """Why the change happened, in words (built once, on first read)."""
        reason = self._reason
        if not isinstance(reason, str):
            reason = self._reason = str(reason)
        return reason

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.event_id,
            self.customer_id,
            self.version,
            self.previous_tier,
            self.new_tier,
            self.previous_segment,
            self.new_segment,
            self.cause,
            self.reason,
            self.recency_days,
            self.frequency,
            self.monetary,
            self.r,
            self.f,
            self.m,
            self.occurred_at,
            self.previous_behaviour,
            self.new_behaviour,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Change):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        names = [name.lstrip("_") for name in self.__slots__]
        inner = ", ".join(f"{n}={v!r}" for n, v in zip(names, self._fields(), strict=True))
        return f"Change({inner})"

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


class Values(NamedTuple):
    """A customer's raw RFM figures at one UTC day (a tuple: built ~10 times per event)."""

    recency_days: int | None
    frequency: int
    monetary: Decimal
    engagement: dict[str, Decimal]

    @property
    def engagement_total(self) -> Decimal:
        return sum(self.engagement.values(), _ZERO)


class _EventReason(NamedTuple):
    """The event part of a reason, put into words only when a change is read.

    A tuple because one is built for every event, and most never become a change.
    """

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
    """A frozen behaviour segmentation, versioned (``tierstream.behaviours`` adapts the
    published snapshot of ``models``). Pure and deterministic: the same values and version
    give the same segment in every process."""

    @property
    def version(self) -> int: ...

    def assign(self, values: Values) -> tuple[int, str]:
        """(behaviour id, label) of a customer with these figures; ids are stable across
        versions, labels describe the behaviour's current centroid."""
        ...


class AsOfError(ValueError):
    """Raised for an as-of time earlier than the state has already been brought to."""


def change_event_id(customer_id: str, version: int) -> str:
    """uuid5(CHANGE_NAMESPACE, "<customer_id>\\0<version>"), computed without uuid's overhead."""
    h = hashlib.sha1(  # uuid5 is defined on SHA-1; an id, not a secret
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
        # Assigns the behaviour segment whenever the customer is re-scored (None: off).
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
        r_scale, f_scale, _, e_scale = self._scales
        self._plain_rfe = all(scale.harder is scale.easier for scale in (r_scale, f_scale, e_scale))
        # Engagement kinds weighted by kind (None: every kind counts 1, the plain sum).
        self._kind_weights = dict(s.engagement.kinds) or None
        # Trait criteria of the tier plan, and placements by (scores, trait scores).
        self._criteria = dict(config.tiers.traits)
        self._trait_placements: dict[tuple[Scores, tuple[int, ...]], tuple[str, str]] = {}
        # R drops the day after recency passes a cut (plus margin): offsets from the last purchase.
        self._recency_offsets = tuple(
            math.floor(cut + s.recency.hysteresis) + 1 for cut in t.recency if cut.is_finite()
        )
        self._placements: dict[Scores, tuple[str, str]] = {}
        self._explanations: dict[Scores, tuple[str, str]] = {}
        # One Scores object per combination: cheaper than building a frozen dataclass for
        # every candidate day, and equal scores are then usually the same object.
        self._interned: dict[tuple[int, int, int, int], Scores] = {}
        # Placements of the interned scores by identity (they live as long as the scorer):
        # an int hash instead of the dataclass's Python-level one.
        self._placed: dict[int, tuple[str, str]] = {}

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
        change = self._rescore(
            state, today, event.occurred_at, cause, _EventReason(event, outcome, self.window)
        )
        if change is not None:
            changes.append(change)
        return ApplyResult(outcome, changes)

    def apply_profile(
        self, state: CustomerState, update: ProfileUpdate, now: datetime
    ) -> ApplyResult:
        """Replace (or, for a tombstone, delete) the customer's traits as of ``now`` and
        re-score (cause ``profile``). An update older than the traits held is ``STALE``; the
        same update again, or the loser of a tie in ``updated_at``, changes nothing."""
        changes = self.advance(state, now)
        today = state.clock_day
        assert today is not None
        before = state.traits
        if update.traits is None:
            if before is None:
                return ApplyResult(Outcome.DUPLICATE, changes)
            state.traits = None
        else:
            held = state.traits_at
            at = update.updated_at
            assert at is not None, "an update with traits has its time"
            if held is not None:
                if at < held or (at == held and before is None):
                    return ApplyResult(Outcome.STALE, changes)  # older, or deleted since
                if at == held and canonical(update.traits) <= canonical(before):
                    return ApplyResult(Outcome.DUPLICATE, changes)
            state.traits, state.traits_at = dict(update.traits), at
        moment = update.updated_at or now
        change = self._rescore(state, today, moment, "profile", _ProfileReason(before, update))
        if change is not None:
            changes.append(change)
        return ApplyResult(Outcome.APPLIED, changes)

    def advance(self, state: CustomerState, now: datetime) -> list[Change]:
        """Bring ``state`` forward to ``now``, emitting time-driven changes at their moment."""
        return self.advance_to_day(state, utc_day(now))

    def advance_to_day(self, state: CustomerState, target: int) -> list[Change]:
        """``advance`` to the start of a day number (what a day-bucketed timer has)."""
        clock = state.clock_day
        if clock is None:
            state.clock_day = target
            return []
        if target <= clock:
            return []
        changes: list[Change] = []
        previous: Values | None = None
        day, scores = clock, state.scores
        while True:  # each score move up to the target, in order
            move = self._next_move(state, day, scores)
            if move is None or move[0] > target:
                break
            day, scores, current = move
            change = self._record(state, scores, current, day_start(day), "inactivity", None)
            if change is not None:
                # The figures before the move, only now that a change needs them in words.
                if previous is not None:
                    before = (previous.frequency, previous.monetary)
                else:
                    known = state.scored
                    if known is not None and known[0] is self and known[1] == clock:
                        before = (known[2], known[3])  # scored on this very day: no change since
                    else:
                        before = self._totals(state, clock)
                reason = change._reason  # built by _record just above
                assert isinstance(reason, _ChangeReason)
                reason.because = _InactivityReason(before, current, self.window)
                changes.append(change)
            previous = current
        if previous is not None:
            state.scored = (self, day, previous.frequency, previous.monetary)
        state.clock_day = target
        floor = state.prune_floor
        if self.window is not None and (floor is None or floor <= target - self.window):
            self._prune(state)
        return changes

    def rescore(
        self, state: CustomerState, now: datetime, cause: Cause, because: str
    ) -> list[Change]:
        """Re-score after a change of cut points or model (not of the customer's own data)."""
        changes = self.advance(state, now)
        assert state.clock_day is not None
        change = self._rescore(state, state.clock_day, now, cause, because)
        if change is not None:
            changes.append(change)
        return changes

    def erase(self, state: CustomerState, now: datetime) -> Change | None:
        """The final change of a customer whose data is erased on request."""
        if state.tier is None and state.segment is None and state.behaviour is None:
            return None
        state.version += 1
        change = leaving_change(
            state,
            "erasure",
            "customer data erased on request",
            now,
            previous_behaviour=_label(state.behaviour),
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
            if self._place(state, scores) != current:
                return day_start(day)
        return None

    def next_rescore_at(self, state: CustomerState) -> datetime | None:
        """When any score would next move with no new event (None: never)."""
        day = self.next_rescore_day(state)
        return None if day is None else day_start(day)

    def next_rescore_day(self, state: CustomerState) -> int | None:
        """``next_rescore_at`` as a day number (what a day-bucketed timer wants)."""
        clock = state.clock_day
        if clock is None:
            return None
        move = self._next_move(state, clock, state.scores)
        return None if move is None else move[0]

    # ---------------------------------------------------------------- queries
    def values(self, state: CustomerState, day: int) -> Values:
        last = state.last_purchase_at
        return self._values(state, day, None if last is None else utc_day(last))

    def _totals(self, state: CustomerState, day: int) -> tuple[int, Decimal]:
        """Frequency and monetary of ``values`` alone (all an inactivity reason needs)."""
        values = self._values(state, day, None)
        return values.frequency, values.monetary

    def _values(self, state: CustomerState, day: int, last_day: int | None) -> Values:
        # The hottest function of a replay: the window test is hoisted out of the loops.
        lo = -math.inf if self.window is None else day - self.window
        frequency = 0
        monetary = _ZERO
        for d, totals in state.days.items():
            if lo < d <= day:
                frequency += totals.purchases
                monetary += totals.net
        engagement: dict[str, Decimal] = {}
        if state.engagement_days:
            for d, kinds in state.engagement_days.items():
                if lo < d <= day:
                    for kind, weight in kinds.items():
                        engagement[kind] = engagement.get(kind, _ZERO) + weight
        recency = None
        if last_day is not None:
            # An event dated slightly in the future (clock skew) counts as today.
            recency = day - last_day if day > last_day else 0
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
        } | _traits_record(view)

    def explain(self, state: CustomerState) -> str:
        """Why the customer is where they are now."""
        scores = state.scores
        if scores is None:
            return "no purchase yet: not placed in a tier or segment"
        tier_rule, segment_rule = self._explain(scores, self._trait_scores(state))
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
        state.cached_moves = state.scored = None
        floor = state.prune_floor
        if floor is not None and day < floor:
            state.prune_floor = day
        return Outcome.APPLIED

    def engagement_total(self, values: Values) -> Decimal:
        """What the E score is taken from: the engagement weights, kinds weighted by kind."""
        engagement = values.engagement
        if not engagement:
            return _ZERO
        if self._kind_weights is None:
            return sum(engagement.values(), _ZERO)
        return kind_weighted_total(engagement, self._kind_weights, Decimal(1))

    def _score_values(self, values: Values, previous: Scores | None) -> Scores | None:
        if values.recency_days is None:
            return None  # no purchase ever: not placed yet
        r, f, m, e = self._scales
        total = self.engagement_total(values) if values.engagement else _ZERO
        if previous is None:
            key = (
                r.score(values.recency_days, None),
                f.score(values.frequency, None),
                m.score(values.monetary, None),
                e.score(total, None),
            )
        elif self._plain_rfe:
            # No hysteresis on R, F and E (the usual case): their scores need no previous
            # one, so they come straight from the cut points (this runs per candidate day).
            key = (
                5 - bisect_left(r.cuts, values.recency_days),
                1 + bisect_right(f.cuts, values.frequency),
                m.score(values.monetary, previous.m),
                1 + bisect_right(e.cuts, total),
            )
        else:
            key = (
                r.score(values.recency_days, previous.r),
                f.score(values.frequency, previous.f),
                m.score(values.monetary, previous.m),
                e.score(total, previous.e),
            )
        scores = self._interned.get(key)
        if scores is None:
            scores = self._interned[key] = Scores(*key)
            self._placed[id(scores)] = classify(self.config, scores)
        return scores

    def _classify(self, scores: Scores | None) -> tuple[str | None, str | None]:
        if scores is None:
            return (None, None)
        placed = self._placed.get(id(scores))
        if placed is not None:
            return placed
        cached = self._placements.get(scores)
        if cached is None:
            cached = self._placements[scores] = classify(self.config, scores)
        return cached

    def _explain(self, scores: Scores, traits: tuple[TraitScore, ...] = ()) -> tuple[str, str]:
        if traits:
            return explain(self.config, scores, traits)
        cached = self._explanations.get(scores)
        if cached is None:
            cached = self._explanations[scores] = explain(self.config, scores)
        return cached

    def _trait_scores(self, state: CustomerState) -> tuple[TraitScore, ...]:
        """The plan's trait criteria scored for this customer (empty: the plan has none)."""
        if not self._criteria:
            return ()
        return trait_scores(self._criteria, state.traits)

    def _place(self, state: CustomerState, scores: Scores) -> tuple[str | None, str | None]:
        """Tier and segment of ``state`` with these scores, its traits included."""
        if not self._criteria:
            return self._classify(scores)
        traits = self._trait_scores(state)
        key = (scores, tuple(points for _, _, points in traits))
        placed = self._trait_placements.get(key)
        if placed is None:
            placed = self._trait_placements[key] = classify(self.config, scores, traits)
        return placed

    def _candidate_days(self, state: CustomerState) -> list[int]:
        """Days on which a score input changes with no new event, ascending (may be past).

        They depend only on the day totals and the last purchase, so they are cached on the
        state until an event changes those (the cache is keyed by this scorer).
        """
        cached = state.cached_moves
        if cached is not None and cached.owner is self:
            return cached.days
        # A future-dated bucket starts counting on its day and stops when it leaves the window.
        days = [*state.days, *state.engagement_days]
        if self.window is not None:
            window = self.window
            days += [d + window for d in days]
        last = None
        if state.last_purchase_at is not None:
            last = utc_day(state.last_purchase_at)
            days += [last + offset for offset in self._recency_offsets]
        ordered = sorted(set(days))
        state.cached_moves = Moves(self, ordered, last)
        return ordered

    def _walk(
        self, state: CustomerState, until: int | None
    ) -> Iterator[tuple[int, Scores, Values]]:
        """Each future day (up to ``until``) on which the scores move: new scores and values."""
        clock = state.clock_day
        if clock is None:
            return
        previous = state.scores
        while True:
            move = self._next_move(state, clock, previous)
            if move is None or (until is not None and move[0] > until):
                return
            yield move
            clock, previous = move[0], move[1]

    def _next_move(
        self, state: CustomerState, clock: int, previous: Scores | None
    ) -> tuple[int, Scores, Values] | None:
        """The first day after ``clock`` on which scores ``previous`` would move (None: never).

        The answer is remembered on the state: it holds for every later clock up to that day
        while the scores stay the same, so the timer that schedules a move, the advance that
        reaches the day and the reschedule after it search only once.
        """
        cache = state.cached_moves
        if cache is None or cache.owner is not self:
            self._candidate_days(state)
            cache = state.cached_moves
            assert cache is not None  # _candidate_days always leaves its cache
        known = cache.next
        if known is not None:
            since, scores, day, moved, values = known
            if (
                since <= clock
                and (scores is previous or scores == previous)
                and (day is None or clock < day)
            ):
                if day is None:
                    return None
                assert moved is not None
                return day, moved, values
        if previous is not None:
            # The interned equal of ``previous``: then "did the scores move" is ``is not``.
            key = (previous.r, previous.f, previous.m, previous.e)
            previous = self._interned.setdefault(key, previous)
        candidates, last_day = cache.days, cache.last_day
        for index in range(bisect_right(candidates, clock), len(candidates)):
            day = candidates[index]
            values = self._values(state, day, last_day)
            moved = self._score_values(values, previous)
            if moved is None or moved is previous:
                continue
            cache.next = (clock, previous, day, moved, values)
            return day, moved, values
        cache.next = (clock, previous, None, None, None)
        return None

    def _rescore(
        self, state: CustomerState, day: int, moment: datetime, cause: Cause, because: object
    ) -> Change | None:
        values = self.values(state, day)
        state.scored = (self, day, values.frequency, values.monetary)
        scores = self._score_values(values, state.scores)
        if scores is None:
            return None
        return self._record(state, scores, values, moment, cause, because)

    def _record(
        self,
        state: CustomerState,
        scores: Scores,
        values: Values,
        moment: datetime,
        cause: Cause,
        because: object,
    ) -> Change | None:
        before = state.scores
        state.scores = scores
        tier, segment = self._place(state, scores)
        behaviour = state.behaviour
        if self.behaviour is not None:
            assigned = self.behaviour.assign(values)
            if behaviour is not None and assigned[0] == behaviour[0]:
                # Same behaviour, perhaps described anew by a newer model: no change event.
                state.behaviour = behaviour = assigned
            else:
                behaviour = assigned
        if tier == state.tier and segment == state.segment and behaviour == state.behaviour:
            return None
        note = None
        if behaviour != state.behaviour and self.behaviour is not None:
            note = (_label(behaviour), self.behaviour.version)
        state.version += 1
        change = Change(
            customer_id=state.customer_id,
            version=state.version,
            previous_tier=state.tier,
            new_tier=tier,
            previous_segment=state.segment,
            new_segment=segment,
            cause=cause,
            reason=_ChangeReason(self, because, before, scores, note, self._trait_scores(state)),
            recency_days=values.recency_days,
            frequency=values.frequency,
            monetary=values.monetary,
            r=scores.r,
            f=scores.f,
            m=scores.m,
            occurred_at=moment,
            previous_behaviour=_label(state.behaviour),
            new_behaviour=_label(behaviour),
        )
        state.tier, state.segment, state.behaviour = tier, segment, behaviour
        return change

    def _prune(self, state: CustomerState) -> None:
        """Drop day totals and event digests whose day can never count again."""
        if self.window is None or state.clock_day is None:
            return
        horizon = state.clock_day - self.window
        floor = state.prune_floor
        if floor is not None and floor > horizon:
            return  # nothing has left the window since the last prune
        leaving = [d for d in state.days if d <= horizon]
        if leaving:
            _archive(state, leaving)
        for d in leaving:
            del state.days[d]
        for d in [d for d in state.engagement_days if d <= horizon]:
            del state.engagement_days[d]
        if state.seen:
            state.seen = {k: d for k, d in state.seen.items() if d > horizon}
        # Every applied event's day is in ``seen``, so its least day bounds all three.
        state.prune_floor = min(
            itertools.chain(state.seen.values(), state.days, state.engagement_days),
            default=None,
        )


def _archive(state: CustomerState, leaving: list[int]) -> None:
    """Fold day totals leaving the window into the state's lifetime totals (CLV, retention)."""
    archived = state.archived
    if archived is None:
        archived = state.archived = Archived()
    for d in leaving:
        totals = state.days[d]
        archived.net += totals.net
        if totals.purchases > 0:
            archived.purchase_days += 1
            if archived.last_day is None or d > archived.last_day:
                archived.last_day = d


def _score_moves(before: Scores | None, after: Scores) -> str:
    if before is None:
        return f"first scored R{after.r} F{after.f} M{after.m} E{after.e}"
    moves = [
        f"{name.upper()} {getattr(before, name)}→{getattr(after, name)}"
        for name in ("r", "f", "m", "e")
        if getattr(before, name) != getattr(after, name)
    ]
    return ", ".join(moves)


class _InactivityReason(NamedTuple):
    before: tuple[int, Decimal]  # frequency and monetary before the move
    after: Values
    window: int | None

    def __str__(self) -> str:
        (frequency, monetary), after = self.before, self.after
        parts = []
        if after.recency_days is not None:
            parts.append(f"no purchase for {after.recency_days} days")
        if after.frequency < frequency or after.monetary != monetary:
            parts.append(
                f"purchases older than {self.window} days left the window "
                f"(frequency {frequency}→{after.frequency}, "
                f"monetary {monetary}→{after.monetary})"
            )
        return ", ".join(parts)


class _ChangeReason:
    """A change's reason, put into words only when it is read (most never are on a replay).

    Everything it reads is immutable, so the text is the same whenever it is built.
    """

    __slots__ = ("because", "before", "behaviour", "scorer", "scores", "traits")

    def __init__(
        self,
        scorer: Scorer,
        because: object,
        before: Scores | None,
        scores: Scores,
        behaviour: tuple[str | None, int] | None,
        traits: tuple[TraitScore, ...] = (),
    ) -> None:
        self.scorer = scorer
        self.because = because  # the event, the inactivity or the re-score behind it
        self.before = before
        self.scores = scores
        self.behaviour = behaviour  # (new label, behaviour model version) when it moved
        self.traits = traits  # the trait criteria's values and scores at the change

    def __str__(self) -> str:
        tier_rule, segment_rule = self.scorer._explain(self.scores, self.traits)
        parts = [str(self.because), _score_moves(self.before, self.scores), tier_rule]
        parts.append(segment_rule)
        if self.behaviour is not None:
            label, version = self.behaviour
            parts.append(f"behaviour: {label} (segment model v{version})")
        return "; ".join(part for part in parts if part)


class _ProfileReason(NamedTuple):
    """A profile update, put into words when its change is read: the traits that moved."""

    before: dict[str, Any] | None
    update: ProfileUpdate

    def __str__(self) -> str:
        when = self.update.updated_at
        if self.update.traits is None:
            return "profile deleted: the customer's traits were removed"
        old, new = self.before or {}, self.update.traits
        moved = [
            f"{name} {_shown(old.get(name))}→{_shown(new.get(name))}"
            for name in sorted(old.keys() | new.keys())
            if old.get(name) != new.get(name) or type(old.get(name)) is not type(new.get(name))
        ]
        text = f"profile update of {when.date().isoformat() if when else 'unknown date'}"
        return f"{text}: {', '.join(moved)}" if moved else f"{text}: no trait changed"


def _shown(value: object) -> str:
    if value is None:
        return "(none)"
    return format_trait(value) if isinstance(value, bool | str | Decimal) else str(value)


def _traits_record(state: CustomerState) -> dict[str, Any]:
    """The state record's ``traits`` (JSON: numbers as decimal strings), when it has any."""
    if state.traits is None:
        return {}
    return {
        "traits": {
            k: (str(v) if isinstance(v, Decimal) else v) for k, v in sorted(state.traits.items())
        }
    }


def leaving_change(
    state: CustomerState,
    cause: Cause,
    reason: object,
    occurred_at: datetime,
    *,
    previous_behaviour: str | None = None,
) -> Change:
    """The change of a customer (or account) that leaves its tier and segment with no
    values left: an erasure, an account's last contact gone. ``state.version`` must be the
    change's (already bumped)."""
    return Change(
        customer_id=state.customer_id,
        version=state.version,
        previous_tier=state.tier,
        new_tier=None,
        previous_segment=state.segment,
        new_segment=None,
        cause=cause,
        reason=reason,
        recency_days=None,
        frequency=0,
        monetary=_ZERO,
        r=None,
        f=None,
        m=None,
        occurred_at=occurred_at,
        previous_behaviour=previous_behaviour,
    )


def _label(behaviour: tuple[int, str] | None) -> str | None:
    return None if behaviour is None else behaviour[1]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
