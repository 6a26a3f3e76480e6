"""The commit recipe: what one atomic step writes to its shard, decided in one place.

A step of the worker (``ShardLogic`` in streams/processor.py) computes new states, tier
changes, dead letters, account contribution updates and erasures. ``build_batch`` turns
them into the ``Batch`` that one commit writes:

- the states, and each one's next rescore moment (``Batch.schedule``);
- the outbox entries, in publishing order: dead letters, tier changes, contribution
  updates (tierstream/stores/outbox_codec.py encodes them);
- the offsets applied, and the stored ones the step was built on (``Batch.expected``);
- the changes' compact history records and running tallies (``record_changes``);
- the audience membership moves and sizes (``record_memberships``).

The stores only execute a ``Batch``: ``MemoryStore.commit`` in Python, the Redis store
with one script (tierstream/stores/lua/commit.lua, whose header documents its arguments).
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from scoring.accounts import ContributionUpdate
from scoring.engine import Change, change_event_id
from scoring.events import DeadLetter
from scoring.state import CustomerState
from tierstream.erasure import Erasure
from tierstream.jsonbytes import compact_json
from tierstream.stores.base import (
    CUSTOMERS_TALLY,
    UNPLACED,
    Audience,
    Batch,
    Placement,
    audiences_of,
    placement_of,
    size_tally,
)
from tierstream.stores.outbox_codec import encode_change, encode_contribution, encode_dead_letter


def build_batch(
    *,
    offsets: dict[str, int],
    applied: Mapping[str, int],
    states: Iterable[CustomerState],
    next_rescore_at: Callable[[CustomerState], datetime | None],
    unschedule: Iterable[str] = (),
    dead_letters: Sequence[DeadLetter] = (),
    changes: Sequence[Change] = (),
    contributions: Sequence[ContributionUpdate] = (),
    emitted_at: datetime,
    counts: Mapping[str, int],
    erasures: list[Erasure],
    unrecorded: Collection[int] = (),
    before: Mapping[str, Placement],
    learn: Callable[[Batch], None] | None = None,
) -> Batch:
    """The ``Batch`` of one step.

    ``offsets``: topic -> next offset to apply after the step; ``applied``: the stored
    offsets it was built on. ``states``: the customers the step touched, as they are now;
    ``unschedule``: ids to take off the schedule (customers that vanished). The outbox
    entries are stamped ``emitted_at``. ``counts``: the step's outcome counters (tallied
    by ``record_changes``). ``unrecorded``: ``id()`` of changes kept out of the history
    (an erased customer's). ``before``: customer id -> placement of each state as loaded.
    ``learn``: adds learned statistics to ``batch.tallies`` before the changes' tallies
    (streams/learner.py), so that they ride on the same commit.
    """
    expected = {topic: applied.get(topic) for topic in offsets}
    batch = Batch(offsets=offsets, expected=expected, schedule=dict.fromkeys(unschedule))
    for state in states:
        batch.states.append(state)
        moment = next_rescore_at(state)
        batch.schedule[state.customer_id] = None if moment is None else moment.timestamp()
    batch.changes = [encode_dead_letter(letter) for letter in dead_letters]
    batch.changes += [encode_change(change, emitted_at) for change in changes]
    if contributions:
        batch.changes += [encode_contribution(update) for update in contributions]
    if learn is not None:
        learn(batch)
    # Recent-change history and running totals go in the same atomic commit.
    batch.erasures = erasures
    record_changes(batch, changes, counts, unrecorded=unrecorded)
    # Audience memberships: the moves between the states as loaded and as written (an
    # erased customer leaves every audience), in the same commit.
    record_memberships(batch, before, [erasure.customer_id for erasure in erasures])
    return batch


# Step counters (ShardProcessor's StepResult.counts) worth keeping as cluster-wide totals:
# committed with the state they describe, so each counts exactly once, whoever applied it.
_TALLIED = frozenset({"applied", "duplicate", "outside_window", "rescored", "erased"})
_TALLIED_PREFIXES = ("dead_letter:", "profile:")  # profile: outcomes of trait updates


def history_entry(change: Change) -> bytes:
    """The compact record of one change kept in a customer's history.

    A JSON array ``[version, occurred_at (epoch seconds), cause, previous tier, new tier,
    previous segment, new segment]``: about 50 bytes. The reason text is left out (it is
    on the tier-changes topic; the API explains the current placement instead), and so is
    the event id, which is a function of customer id and version.
    """
    moment = change.occurred_at.timestamp()
    at: int | float = int(moment) if moment.is_integer() else moment
    record = [
        change.version,
        at,
        change.cause,
        change.previous_tier,
        change.new_tier,
        change.previous_segment,
        change.new_segment,
    ]
    return compact_json(record)


def decode_history(customer_id: str, entry: bytes) -> dict[str, Any]:
    """One history record as the API shows it (the fields of a tier-change event)."""
    version, at, cause, previous_tier, new_tier, previous_segment, new_segment = json.loads(entry)
    return {
        "event_id": change_event_id(customer_id, version),
        "version": version,
        "occurred_at": datetime.fromtimestamp(at, UTC).isoformat(),
        "cause": cause,
        "previous_tier": previous_tier,
        "new_tier": new_tier,
        "previous_segment": previous_segment,
        "new_segment": new_segment,
    }


@functools.lru_cache(maxsize=4096)  # a handful of tiers and segments: a few dozen moves
def flow_key(kind: str, previous: str | None, new: str | None) -> str:
    """Tally name of a move between tiers (kind "tier"), segments ("segment") or
    behaviour segments ("behaviour").

    JSON, because tier and segment names are free text from the config.
    """
    return f"flow:{kind}:" + json.dumps([previous, new], separators=(",", ":"), ensure_ascii=False)


def record_changes(
    batch: Batch,
    changes: Iterable[Change],
    counts: Mapping[str, int] | None = None,
    *,
    unrecorded: Collection[int] = (),
) -> None:
    """Add a step's tier changes to ``batch.history`` and its counters to ``batch.tallies``.

    Tallies: ``change:<cause>``, ``flow:tier:[from,to]``, ``flow:segment:[from,to]`` and
    ``flow:behaviour:[from,to]`` (behaviour segment labels) per change, plus the event
    outcomes and dead letters of ``counts`` (a step's ``StepResult.counts``). Call it once
    per batch, just before ``commit``. ``unrecorded``: ``id()`` of changes counted but kept
    out of the history (an erased customer's, whose history key the erasure deletes).
    """
    tallies: Counter[str] = Counter(batch.tallies)
    for change in changes:
        if not unrecorded or id(change) not in unrecorded:
            batch.history.setdefault(change.customer_id, []).append(history_entry(change))
        tallies[f"change:{change.cause}"] += 1
        if change.previous_tier != change.new_tier:
            tallies[flow_key("tier", change.previous_tier, change.new_tier)] += 1
        if change.previous_segment != change.new_segment:
            tallies[flow_key("segment", change.previous_segment, change.new_segment)] += 1
        if change.previous_behaviour != change.new_behaviour:  # for the segment review
            tallies[flow_key("behaviour", change.previous_behaviour, change.new_behaviour)] += 1
    for name, count in (counts or {}).items():
        if count and (name in _TALLIED or name.startswith(_TALLIED_PREFIXES)):
            tallies[name] += count
    batch.tallies = dict(tallies)


def record_memberships(
    batch: Batch,
    before: Mapping[str, Placement],
    erased: Iterable[str] = (),
) -> None:
    """Fill ``batch.memberships`` with the moves between ``before`` (customer id -> the
    placement of its state as loaded, ``placement_of``; absent: no state) and the batch's
    final states (an erased id without a fresh state belongs to none), and add them to the
    running sizes in ``batch.tallies``. Only changes are written."""
    after = {state.customer_id: state for state in batch.states}  # the last write wins
    moves: dict[Audience, tuple[list[str], list[str]]] = {}
    sizes: Counter[str] = Counter()
    for cid in dict.fromkeys([*after, *erased]):
        stored = before.get(cid)
        # Stored customers: one more for a new state, one fewer for an erased one.
        sizes[CUSTOMERS_TALLY] += (cid in after) - (stored is not None)
        old_place = stored if stored is not None else UNPLACED
        new_place = placement_of(after.get(cid))
        if old_place == new_place:
            continue
        old, new = audiences_of(old_place), audiences_of(new_place)
        for audience in old - new:
            moves.setdefault(audience, ([], []))[0].append(cid)
            sizes[size_tally(audience)] -= 1
        for audience in new - old:
            moves.setdefault(audience, ([], []))[1].append(cid)
            sizes[size_tally(audience)] += 1
    batch.memberships = moves
    # The sizes ride on the running totals (same commit): GET /tiers reads them at once.
    tallies = Counter(batch.tallies)
    tallies.update(sizes)
    batch.tallies = {name: n for name, n in tallies.items() if n}
