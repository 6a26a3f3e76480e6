"""The embedded replay: a history file through the scoring core, in event-time order.

No Kafka or Redis: events are read, validated, put in event-time order (an external merge
sort: tierstream/ordering.py, so memory does not grow with the file) and applied with the
very ``Scorer`` the streaming worker uses. Changes go to ``emit`` as they happen; only the
per-customer states (and their timers) are held. The replay clock is the event time; every
customer's time-driven changes (inactivity, window expiry) fire at their own moment as
the clock passes it, exactly as the worker's timer does in real time.
"""

from __future__ import annotations

import gc
import heapq
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from scoring.days import day_start, utc_day
from scoring.engine import Change, Outcome, Scorer
from scoring.events import InputEvent
from scoring.profiles import ProfileUpdate
from scoring.quantiles import population_thresholds
from scoring.state import CustomerState
from tierstream.accounts import AccountBook
from tierstream.ordering import TimeOrdered
from tierstream.readers import Parsed, Reject

ProgressHook = Callable[[int], None]


@dataclass
class ReplayStats:
    lines: int = 0
    events: int = 0
    applied: int = 0
    duplicates: int = 0
    outside_window: int = 0
    after_as_of: int = 0
    rejects: list[Reject] = field(default_factory=list)
    rejected: int = 0  # every malformed line (``valid_events`` keeps only the first in ``rejects``)
    total: int | None = None  # events to apply, once known (they are all read before the first)
    changes: int = 0
    threshold_updates: int = 0
    profiles: int = 0  # profile updates applied (``replay --profiles``)
    stale_profiles: int = 0  # older than the traits held, or repeated
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ReplayResult:
    states: dict[str, CustomerState]
    scorer: Scorer
    stats: ReplayStats
    as_of: datetime


def collect(parsed: Iterable[Parsed], stats: ReplayStats, *, strict: bool) -> list[InputEvent]:
    events: list[InputEvent] = []
    for item in parsed:
        stats.lines += 1
        if isinstance(item, Reject):
            stats.rejects.append(item)
            stats.rejected += 1
            if strict:
                raise StrictReplayError(item)
            continue
        events.append(item)
    return events


# Malformed lines ``valid_events`` keeps in ``stats.rejects`` (the rest are only counted, and
# passed to ``on_reject``): a file of millions of bad lines must not fill memory either.
KEPT_REJECTS = 1000


def valid_events(
    parsed: Iterable[Parsed],
    stats: ReplayStats,
    *,
    strict: bool,
    on_reject: Callable[[Reject], None] | None = None,
) -> Iterator[InputEvent]:
    """The events of ``parsed``, streamed; rejects counted, the first kept, each to
    ``on_reject``. Raises ``StrictReplayError`` at the first reject when ``strict``."""
    for item in parsed:
        stats.lines += 1
        if isinstance(item, Reject):
            stats.rejected += 1
            if len(stats.rejects) < KEPT_REJECTS:
                stats.rejects.append(item)
            if on_reject is not None:
                on_reject(item)
            if strict:
                raise StrictReplayError(item)
            continue
        yield item


class StrictReplayError(RuntimeError):
    def __init__(self, reject: Reject) -> None:
        super().__init__(f"line {reject.line}: {reject.error}")
        self.reject = reject


def replay(
    events: Iterable[InputEvent],
    scorer: Scorer,
    *,
    as_of: datetime,
    emit: Callable[[Change], None],
    stats: ReplayStats,
    progress: ProgressHook | None = None,
    profiles: Iterable[ProfileUpdate] = (),
    accounts: AccountBook | None = None,
) -> ReplayResult:
    """Apply ``events`` in event-time order up to ``as_of``; ``emit`` gets every change.

    ``profiles``: trait updates, sorted by ``updated_at``, merged into the events' order
    (at the same instant an event goes first). With ``accounts``, the events' B2B accounts
    are kept and scored too (their changes go to the book's own ``emit``)."""
    # The replay builds a large heap of long-lived, acyclic objects (states, changes); the
    # cyclic collector would re-walk all of it again and again (~15% of the run) to find
    # nothing, so it is paused for the loop and restored afterwards.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _replay(
            events,
            scorer,
            as_of=as_of,
            emit=emit,
            stats=stats,
            progress=progress,
            profiles=profiles,
            accounts=accounts,
        )
    finally:
        if collecting:
            gc.enable()


def _replay(
    events: Iterable[InputEvent],
    scorer: Scorer,
    *,
    as_of: datetime,
    emit: Callable[[Change], None],
    stats: ReplayStats,
    progress: ProgressHook | None,
    profiles: Iterable[ProfileUpdate] = (),
    accounts: AccountBook | None = None,
) -> ReplayResult:
    started = time.perf_counter()
    end_day = utc_day(as_of)
    # Stable: events at the same instant keep file order, so a replay is deterministic.
    ordered = TimeOrdered(events)
    stream: Iterable[InputEvent | ProfileUpdate] = ordered
    updates = list(profiles)
    if updates:
        # heapq.merge is stable too: at one instant the events (first iterable) go first.
        stream = heapq.merge(ordered, updates, key=lambda item: item.occurred_at)
    states: dict[str, CustomerState] = {}
    # Timers bucketed by day: a heap of the distinct due days and, per day, the customers due
    # then (fired in customer-id order, as a heap of (day, id) pairs would). ``scheduled`` is
    # each customer's one live timer; a bucket entry that no longer matches it is stale.
    due_days: list[int] = []
    timers: dict[int, set[str]] = {}
    scheduled: dict[str, int] = {}
    quintiles = scorer.config.scores.method == "quintiles"
    refresh_every = scorer.config.scores.refresh_days
    next_refresh: int | None = None

    def schedule(state: CustomerState) -> None:
        # The next day any score moves: cheaper to find than the next tier change, and
        # advance() walks the silent score moves in between anyway.
        day = scorer.next_rescore_day(state)
        if day is None:
            scheduled.pop(state.customer_id, None)
            return
        customer_id = state.customer_id
        if scheduled.get(customer_id) != day:
            scheduled[customer_id] = day
            bucket = timers.get(day)
            if bucket is None:
                timers[day] = {customer_id}
                heapq.heappush(due_days, day)
            else:
                bucket.add(customer_id)

    def fire_timers(through_day: int) -> None:
        while due_days and due_days[0] <= through_day:
            day = heapq.heappop(due_days)
            # Rescheduling while firing always lands after ``day``, so the bucket is final.
            for customer_id in sorted(timers.pop(day)):
                if scheduled.get(customer_id) != day:
                    continue  # superseded by a later reschedule
                del scheduled[customer_id]
                state = states[customer_id]
                changes = scorer.advance_to_day(state, day)
                for change in changes:
                    emit(change)
                stats.changes += len(changes)
                schedule(state)

    def refresh_thresholds(day: int) -> None:
        nonlocal scorer
        fire_timers(day)
        moment = day_start(day)
        scorer = scorer.with_thresholds(
            population_thresholds(scorer, states.values(), day, scorer.thresholds.version + 1)
        )
        stats.threshold_updates += 1
        because = f"score cut points recomputed from {len(states)} customers"
        for state in states.values():
            for change in scorer.rescore(state, moment, "threshold_update", because):
                emit(change)
                stats.changes += 1
            schedule(state)

    def _fire_due(day: int) -> None:
        """Cut-point refreshes and customer timers due by ``day``, before what comes on it."""
        nonlocal next_refresh
        if quintiles:
            if next_refresh is None:
                next_refresh = day + refresh_every
            while next_refresh <= day:
                refresh_thresholds(next_refresh)
                next_refresh += refresh_every
        if due_days and due_days[0] <= day:
            fire_timers(day)

    def state_of(customer_id: str) -> CustomerState:
        state = states.get(customer_id)
        if state is None:
            state = states[customer_id] = CustomerState(customer_id)
        return state

    def settle(state: CustomerState, changes: list[Change]) -> None:
        """Emit what applying to ``state`` changed, and reschedule its timer."""
        for change in changes:
            emit(change)
        stats.changes += len(changes)
        schedule(state)

    index = -1
    for item in stream:
        day = utc_day(item.occurred_at)
        if isinstance(item, ProfileUpdate):
            if day <= end_day:
                _fire_due(day)
                state = state_of(item.customer_id)
                result = scorer.apply_profile(state, item, item.occurred_at)
                if result.outcome is Outcome.APPLIED:
                    stats.profiles += 1
                else:
                    stats.stale_profiles += 1
                settle(state, result.changes)
            continue
        event = item
        index += 1
        if index == 0:
            stats.total = ordered.count
        stats.events += 1
        if day > end_day:
            stats.after_as_of += 1
            continue
        if quintiles or (due_days and due_days[0] <= day):
            _fire_due(day)
        if accounts is not None:
            accounts.fire_timers(day)
        state = state_of(event.customer_id)
        result = scorer.apply(state, event, event.occurred_at)
        if result.outcome is Outcome.APPLIED:
            stats.applied += 1
        elif result.outcome is Outcome.DUPLICATE:
            stats.duplicates += 1
        else:
            stats.outside_window += 1
        settle(state, result.changes)
        if accounts is not None and (event.account_id is not None or state.account is not None):
            accounts.contact_event(state, event, result.outcome, event.occurred_at)
        if progress is not None and index % 2048 == 0:
            progress(index)
    if quintiles and next_refresh is not None:
        while next_refresh <= end_day:
            refresh_thresholds(next_refresh)
            next_refresh += refresh_every
    fire_timers(end_day)
    if accounts is not None:
        accounts.fire_timers(end_day)
        accounts.finish(as_of)
    for state in states.values():
        # Bring everyone to the as-of day; timers above already emitted every change.
        for change in scorer.advance(state, as_of):
            emit(change)
            stats.changes += 1
    stats.total = ordered.count
    if progress is not None:
        progress(ordered.count or 0)
    stats.seconds = time.perf_counter() - started
    return ReplayResult(states, scorer, stats, as_of)
