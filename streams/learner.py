"""The worker's learning step: each re-scored customer updates its shard's behaviour statistics.

Called once per atomic step (``ShardLogic._step``) with the states the step writes. For
each, the customer's previous contribution (kept on its state) is taken out of the
statistics and its current one put in: its feature vector as of the state's clock, in
the behaviour the model in force assigns (or unassigned before there is a model). The
increments go into ``Batch.tallies`` under ``learn:`` names, so the shard's ``stats`` hash
holds them and they are written by the same commit as the states and offsets: a crash
neither loses nor double-counts a learning step (models/learning.py, docs/state-layout.md).

Before any model exists, the vectors of customers learned for the first time also become
seeds, from which the coordinator seeds the first model. A seed is named by its shard and
its ordinal in the shard (``learn:seed:<shard>:<ordinal>:<j>``, and ``...:n`` = 1 while it
stands), never by the customer's id; the customer's state keeps its ordinal and vector
(``learned_seed``), so that an erasure takes the seed out again in the erasing step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from operator import mul, sub

import numpy as np
from numpy.typing import NDArray

from models.features import DEFAULT_FEATURE_SPEC, FeatureSpec
from models.learning import PREFIX, UNASSIGNED, UNIT, WEIGHT_UNIT, in_feature_order
from models.snapshot import BehaviourSnapshot
from scoring.days import utc_day
from scoring.engine import Scorer
from scoring.state import CustomerState
from tierstream.behaviours import SnapshotBehaviour

# Per-shard count of the seeds standing (written, not erased) and of the ordinals given
# out: a new owner starts from them (Learner.seeds_taken, Learner.next_ordinal), so the
# seeds are the shard's first ``seeds_wanted`` customers whoever learned them.
SEEDS_TALLY = PREFIX + "seeds"
ORDINALS_TALLY = PREFIX + "seed_ordinals"


# Steps with at least this many customers are assigned and summed with numpy (one call
# per step); smaller ones (a timer step for one customer) in plain Python.
VECTOR_MIN = 16


IntArray = NDArray[np.int64]

# utc_day without its call (scoring.days): aware datetimes subtract in UTC.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def shard_learner(
    seeds_wanted: int,
    shard: int,
    tally: Callable[[int, str], int],
    half_life_days: float = 0,
) -> Learner:
    """The learner of a shard just taken: its seed counts go on from the shard's committed
    ones (``tally(shard, name)``: one running total of the shard's ``stats``)."""
    return Learner(
        seeds_wanted,
        tally(shard, SEEDS_TALLY),
        shard=shard,
        next_ordinal=tally(shard, ORDINALS_TALLY),
        half_life_days=half_life_days,
    )


class Learner:
    """One shard's learning step (pure: it only fills a step's tallies)."""

    def __init__(
        self,
        seeds_wanted: int,
        seeds_taken: int = 0,
        spec: FeatureSpec = DEFAULT_FEATURE_SPEC,
        *,
        shard: int = 0,
        next_ordinal: int | None = None,
        half_life_days: float = 0,
    ) -> None:
        self.seeds_wanted = seeds_wanted
        # Seeds the shard has committed (its SEEDS_TALLY when the shard was taken), plus
        # those of this owner's steps; a step thrown away is rebuilt by a new owner.
        self.seeds_taken = seeds_taken
        # The next seed's ordinal in the shard (ORDINALS_TALLY): ordinals are never reused,
        # so an erased seed's fields stay zero and a replacement seed gets a fresh name.
        self.next_ordinal = seeds_taken if next_ordinal is None else next_ordinal
        self.shard = shard
        self.cap = spec.recency_cap_days
        self.kinds = spec.engagement_kinds
        self.names = spec.names
        self._digits = [str(j) for j in range(len(spec.names))]
        self._no_engagement = (0,) * len(spec.engagement_kinds)
        # round(log1p(n) * UNIT) for every whole n up to the recency cap (exactly the value
        # the formula gives: the table is built with it).
        self._log_units = [round(math.log1p(n) * UNIT) for n in range(max(self.cap, 1000) + 1)]
        # Forgetting (half_life_days > 0): a contribution weighs 2^(-age / half-life), age
        # = the customer's recency in days, in WEIGHT_UNIT fixed point from this table, and
        # carries its weight (the last item of its list) so that it is taken out exactly.
        self._weights: IntArray | None = None
        if half_life_days > 0:
            self._weights = np.array(
                [round(WEIGHT_UNIT * 0.5 ** (d / half_life_days)) for d in range(self.cap + 1)],
                dtype=np.int64,
            )
        self._snapshot: BehaviourSnapshot | None = None
        self._assign: tuple[tuple[float, ...], tuple[float, ...], list[tuple[float, ...]]] = (
            (),
            (),
            [],
        )
        self._ids: list[int] = []
        self._norms: list[float] = []
        self._norms_array = np.zeros(0)
        self._centres_array = np.zeros((0, 0))
        self._ids_array = np.zeros(0, dtype=np.int64)
        self._mean_array = np.zeros(0)
        self._inv_array = np.zeros(0)

    def learn(
        self, scorer: Scorer, states: Iterable[CustomerState], tallies: dict[str, int], events: int
    ) -> None:
        model = scorer.behaviour
        snapshot = model.snapshot if isinstance(model, SnapshotBehaviour) else None
        if snapshot is not self._snapshot:
            self._prepare(snapshot)
        keep = [state for state in states if state.clock_day is not None]
        # A step of many customers is featurized, assigned and summed as one int64 block
        # (numpy); a small one (a timer step for a customer or two) in plain Python.
        full: IntArray | None = None
        if len(keep) >= VECTOR_MIN:
            full = self._contributions(scorer, snapshot, keep)
            rows: list[list[int]] = full.tolist()
        else:
            rows = [self._contribution(scorer, snapshot, state) for state in keep]
        changed, removed, seeds = self._replace(snapshot, keep, rows, tallies)
        # Per behaviour: [n, sums..., squares...] of what is put in minus what is taken out,
        # turned into tally names once per step.
        delta: dict[int, list[int]] = {}
        dims = len(self.names)
        if full is None:
            _aggregate(delta, [rows[i] for i in changed], 1, dims)
            _aggregate(delta, removed, -1, dims)
        else:
            self._sum_step(delta, full if len(changed) == len(rows) else full[changed], removed)
        self._tally(delta, tallies)
        _bump(tallies, PREFIX + "steps", len(changed))
        # The shard's seed counts, read back when a worker takes the shard (shard_learner).
        _bump(tallies, SEEDS_TALLY, seeds)
        _bump(tallies, ORDINALS_TALLY, seeds)
        _bump(tallies, PREFIX + "events", events)

    def _contribution(
        self, scorer: Scorer, snapshot: BehaviourSnapshot | None, state: CustomerState
    ) -> list[int]:
        """One customer's contribution [behaviour, units..., (weight)], in plain Python."""
        units = self._units(scorer, state)
        new = [-1 if snapshot is None else self._behaviour(units), *units]
        if self._weights is not None:
            new.append(int(self._weights[_days(units[0], self.cap)]))
        return new

    def _contributions(
        self, scorer: Scorer, snapshot: BehaviourSnapshot | None, keep: list[CustomerState]
    ) -> IntArray:
        """``_contribution`` of many customers as one int64 block (numpy)."""
        block = self._block(scorer, keep)
        full = np.empty((len(keep), 1 + block.shape[1]), dtype=np.int64)
        full[:, 0] = -1 if snapshot is None else self._behaviours(block)
        full[:, 1:] = block
        if self._weights is not None:
            days = np.clip(np.rint(np.expm1(block[:, 0] / UNIT)), 0, self.cap).astype(np.int64)
            full = np.hstack((full, self._weights[days][:, None]))
        return full

    def _replace(
        self,
        snapshot: BehaviourSnapshot | None,
        keep: list[CustomerState],
        rows: list[list[int]],
        tallies: dict[str, int],
    ) -> tuple[list[int], list[list[int]], int]:
        """Put each customer's new contribution on its state: (the indices of those that
        changed, the previous contributions to take out, the seeds taken)."""
        changed: list[int] = []
        removed: list[list[int]] = []
        seeds = 0
        seeding = snapshot is None and self.seeds_taken < self.seeds_wanted
        for index, state, new in zip(range(len(rows)), keep, rows, strict=True):
            old = state.learned
            if old == new:
                continue
            if old is not None:
                removed.append(old)
            elif seeding and self._take_seed(state, new, tallies):
                seeds += 1
                seeding = self.seeds_taken < self.seeds_wanted
            changed.append(index)
            state.learned = new
        return changed, removed, seeds

    def _sum_step(
        self, delta: dict[int, list[int]], added: IntArray, removed: list[list[int]]
    ) -> None:
        """What a step puts in (a block) and takes out, per behaviour, exactly."""
        dims = len(self.names)
        if all(len(row) == added.shape[1] for row in removed):  # usual: one block for all
            signs = np.ones(len(added) + len(removed), dtype=np.int64)
            if removed:
                signs[len(added) :] = -1
                added = np.vstack((added, np.array(removed, dtype=np.int64)))
            _sum_signed(delta, added, signs, dims)
        else:  # contributions written before forgetting was switched on or off
            _sum_signed(delta, added, np.ones(len(added), dtype=np.int64), dims)
            _aggregate(delta, removed, -1, dims)

    def _take_seed(self, state: CustomerState, new: list[int], tallies: dict[str, int]) -> bool:
        """Make a customer learned for the first time a seed, while the shard wants more."""
        if self.seeds_taken >= self.seeds_wanted:
            return False
        self.seeds_taken += 1
        state.learned_seed = [self.next_ordinal, *new[1 : 1 + len(self.names)]]
        self._seed(state.learned_seed, 1, tallies)
        self.next_ordinal += 1
        return True

    def forget(self, states: Iterable[CustomerState], tallies: dict[str, int]) -> None:
        """Take the contributions of customers whose data is deleted (erasure) out of the
        statistics, and their seeds (fields back to 0, ``:n`` to 0), in the step that
        deletes them. A seed taken out frees its place: the shard takes another."""
        states = list(states)
        removed = [state.learned for state in states if state.learned is not None]
        delta: dict[int, list[int]] = {}
        dims = len(self.names)
        _aggregate(delta, removed, -1, dims)
        self._tally(delta, tallies)
        for state in states:
            state.learned = None
            if state.learned_seed is not None:
                self._seed(state.learned_seed, -1, tallies)
                _bump(tallies, SEEDS_TALLY, -1)
                self.seeds_taken -= 1
                state.learned_seed = None

    def _seed(self, seed: Sequence[int], sign: int, tallies: dict[str, int]) -> None:
        """Write (sign 1) or take out (-1) one seed: ``seed`` is [ordinal, units...]."""
        name = f"{PREFIX}seed:{self.shard}:{seed[0]}:"
        _bump(tallies, name + "n", sign)
        for j, value in enumerate(seed[1:]):
            if value:
                field = name + self._digits[j]
                tallies[field] = tallies.get(field, 0) + sign * value

    def _tally(self, delta: dict[int, list[int]], tallies: dict[str, int]) -> None:
        dims = len(self.names)
        for behaviour, row in delta.items():
            name = UNASSIGNED if behaviour < 0 else str(behaviour)
            _bump(tallies, f"{PREFIX}n:{name}", row[0])
            for j in range(dims):
                _bump(tallies, f"{PREFIX}s:{name}:{j}", row[1 + j])
                _bump(tallies, f"{PREFIX}q:{name}:{j}", row[1 + dims + j])
            if len(row) > 1 + 2 * dims:  # forgetting: weights and weighted members
                _bump(tallies, f"{PREFIX}w:{name}", row[1 + 2 * dims])
                _bump(tallies, f"{PREFIX}nw:{name}", row[2 + 2 * dims])

    def _behaviours(self, block: IntArray) -> list[int]:
        """``_behaviour`` for a whole step at once (numpy: one product for all customers)."""
        z = (block - self._mean_array) * self._inv_array
        scores = self._norms_array - 2.0 * (z @ self._centres_array.T)
        nearest = scores.argmin(axis=1)  # the first of equals: the earlier behaviour
        ids: list[int] = self._ids_array[nearest].tolist()
        return ids

    def _block(self, scorer: Scorer, states: list[CustomerState]) -> IntArray:
        """``_units`` of many customers: the counts from the tables, the money logs for
        all at once (numpy's log1p and rint, which rounds half to even as ``round``).

        The per-customer part is ``_raw`` written out inline, into flat columns (the hot
        path of the learning step: no tuple or call per customer where it can be helped).
        """
        n = len(states)
        recency_units: list[int] = []
        frequency_units: list[int] = []
        money: list[float] = []
        averages: list[float] = []
        engaged: list[tuple[int, ...]] = []
        engaged_at: list[int] = []
        counts = self._log_units
        top = len(counts)
        cap = self.cap
        raw = self._raw
        put_recency, put_frequency = recency_units.append, frequency_units.append
        put_money, put_average = money.append, averages.append
        for index, state in enumerate(states):
            day = state.clock_day
            scored = state.scored
            if (
                scored is not None
                and scored[0] is scorer
                and scored[1] == day
                and not state.engagement_days
            ):
                # The scorer has just scored this day: its window totals are on the state.
                frequency, monetary = scored[2], float(scored[3])
                last = state.last_purchase_at
                if last is None:
                    recency = cap
                else:
                    recency = day - (last - _EPOCH).days
                    recency = cap if recency > cap else (0 if recency < 0 else recency)
                if frequency > 0:
                    average = monetary / frequency
                else:
                    frequency, average = 0, 0.0
                put_recency(counts[recency])
                put_frequency(
                    counts[frequency] if frequency < top else round(math.log1p(frequency) * UNIT)
                )
                put_money(monetary)
                put_average(average)
                continue
            r, f, m, a, engagement = raw(scorer, state)
            put_recency(r)
            put_frequency(f)
            put_money(m)
            put_average(a)
            if any(engagement):
                engaged.append(engagement)
                engaged_at.append(index)
        out = np.zeros((n, 4 + len(self.kinds)), dtype=np.int64)
        out[:, 0] = recency_units
        out[:, 1] = frequency_units
        amounts = np.array((money, averages), dtype=np.float64)
        logs = np.rint(np.copysign(np.log1p(np.abs(amounts)), amounts) * UNIT)
        out[:, 2] = logs[0]
        out[:, 3] = logs[1]
        if engaged:
            out[engaged_at, 4:] = engaged
        return out

    def _units(self, scorer: Scorer, state: CustomerState) -> tuple[int, ...]:
        recency, frequency, monetary, average, engagement = self._raw(scorer, state)
        return (
            recency,
            frequency,
            round(math.copysign(math.log1p(abs(monetary)), monetary) * UNIT) if monetary else 0,
            round(math.copysign(math.log1p(abs(average)), average) * UNIT) if average else 0,
            *engagement,
        )

    def _raw(
        self, scorer: Scorer, state: CustomerState
    ) -> tuple[int, int, float, float, tuple[int, ...]]:
        """Recency and frequency units, monetary and average order value (not yet logged),
        engagement units: ``models.features.build_features`` in fixed point (the hot path)."""
        day = state.clock_day
        assert day is not None
        scored = state.scored
        engagement: dict[str, Decimal] | None = None
        if (
            scored is not None
            and scored[0] is scorer
            and scored[1] == day
            and not state.engagement_days
        ):
            # The scorer has just scored this day: its window totals are on the state.
            frequency, money = scored[2], scored[3]
            last = state.last_purchase_at
            recency = None if last is None else day - utc_day(last)
        else:
            values = scorer.values(state, day)
            recency, frequency, money = values.recency_days, values.frequency, values.monetary
            engagement = values.engagement
        recency = self.cap if recency is None else min(max(recency, 0), self.cap)
        frequency = max(frequency, 0)
        monetary = float(money)
        average = monetary / frequency if frequency > 0 else 0.0
        counts = self._log_units  # whole days and counts: looked up, not computed
        recency_units = counts[recency]
        if frequency < len(counts):
            frequency_units = counts[frequency]
        else:
            frequency_units = round(math.log1p(frequency) * UNIT)
        if not engagement:
            return recency_units, frequency_units, monetary, average, self._no_engagement
        engaged = tuple(
            round(math.log1p(score) * UNIT) if (score := float(engagement.get(kind, 0))) > 0 else 0
            for kind in self.kinds
        )
        return recency_units, frequency_units, monetary, average, engaged

    def _prepare(self, snapshot: BehaviourSnapshot | None) -> None:
        self._snapshot = snapshot
        if snapshot is None:
            return
        snapshot = in_feature_order(snapshot, self.names)
        mean = tuple(m * UNIT for m in snapshot.mean)
        inv = tuple(1.0 / (s * UNIT) for s in snapshot.scale)
        centres = [tuple(row) for row in snapshot.standardized_centroids().tolist()]
        self._assign = (mean, inv, centres)
        self._ids = [s.behaviour_id for s in snapshot.behaviours]
        self._norms = [sum(c * c for c in centre) for centre in centres]
        self._norms_array = np.array(self._norms)
        self._centres_array = np.array(centres, dtype=np.float64)
        self._ids_array = np.array(self._ids, dtype=np.int64)
        self._mean_array = np.array(mean, dtype=np.float64)
        self._inv_array = np.array(inv, dtype=np.float64)

    def _behaviour(self, units: Sequence[int]) -> int:
        """The nearest standardized centroid (models.snapshot.assign, on fixed point).

        argmin of |c|^2 - 2 z.c, with the products summed by ``map`` (C loops): the
        hot path of the learning step. Ties go to the earlier behaviour, as in ``assign``.
        """
        mean, inv, centres = self._assign
        z = list(map(mul, map(sub, units, mean), inv))
        norms = self._norms
        best, best_distance = 0, math.inf
        for index, centre in enumerate(centres):
            distance = norms[index] - 2.0 * sum(map(mul, z, centre))
            if distance < best_distance:
                best, best_distance = index, distance
        return self._ids[best]


def _aggregate(delta: dict[int, list[int]], rows: list[list[int]], sign: int, dims: int) -> None:
    """Add (sign 1) or take out (-1) contributions ``[behaviour, units...]`` per behaviour
    (models.learning.add_contribution, in integers: numpy's int64 sums are exact here)."""
    if not rows:
        return
    weighted = [row for row in rows if len(row) > 1 + dims]
    if weighted:  # forgetting: summed with their weights (numpy, exact)
        signs = np.full(len(weighted), sign, dtype=np.int64)
        _sum_signed(delta, np.array(weighted, dtype=np.int64), signs, dims)
        rows = [row for row in rows if len(row) == 1 + dims]
        if not rows:
            return
    if len(rows) < VECTOR_MIN:
        for row in rows:
            total = delta.get(row[0])
            if total is None:
                total = delta[row[0]] = [0] * (3 + 2 * dims)
            total[0] += sign
            for j in range(dims):
                value = row[1 + j]
                if value:  # unused engagement kinds are 0: most of a vector, often
                    total[1 + j] += sign * value
                    total[1 + dims + j] += sign * (value * value // UNIT)
        return
    block = np.array(rows, dtype=np.int64)
    _sum_signed(delta, block, np.full(len(rows), sign, dtype=np.int64), dims)


def _sum_signed(delta: dict[int, list[int]], rows: IntArray, signs: IntArray, dims: int) -> None:
    """Per behaviour: sum of ``sign`` (members), of ``sign * units`` and of ``sign * squares``
    over ``rows`` = [behaviour, units...], by one integer product with the behaviours' one-hot
    matrix (exact: a unit is below 4e7, its square below 2e15, a step's sum far below 2^63).

    Rows with a weight w (forgetting: [behaviour, units..., w]) add ``(w * units) //
    WEIGHT_UNIT`` and ``(w * squares) // WEIGHT_UNIT`` instead, plus w and 1 to the weight
    and weighted-members totals: the same integers whenever the row is taken out again.
    Each behaviour's delta is [n, sums..., squares..., weight, weighted members].
    """
    if len(rows) == 0:
        return
    behaviours = rows[:, 0]
    units = rows[:, 1 : 1 + dims]
    squares = units * units // UNIT
    values = np.zeros((len(rows), 3 + 2 * dims), dtype=np.int64)
    values[:, 0] = signs
    if rows.shape[1] > 1 + dims:
        weights = rows[:, 1 + dims]
        units = weights[:, None] * units // WEIGHT_UNIT
        squares = weights[:, None] * squares // WEIGHT_UNIT
        values[:, 1 + 2 * dims] = weights * signs
        values[:, 2 + 2 * dims] = signs
    values[:, 1 : 1 + dims] = units * signs[:, None]
    values[:, 1 + dims : 1 + 2 * dims] = squares * signs[:, None]
    found, which = np.unique(behaviours, return_inverse=True)
    onehot = np.zeros((len(found), len(rows)), dtype=np.int64)
    onehot[which.reshape(-1), np.arange(len(rows))] = 1
    sums: list[list[int]] = (onehot @ values).tolist()
    for behaviour, row in zip(found.tolist(), sums, strict=True):
        total = delta.get(behaviour)
        if total is None:
            delta[behaviour] = row
        else:
            for j, value in enumerate(row):
                total[j] += value


def _days(recency_units: int, cap: int) -> int:
    """The recency in whole days back from its units (log1p in fixed point: exact for
    whole days up to far beyond the cap, as ``np.expm1`` in ``Learner._contributions``)."""
    return min(max(round(math.expm1(recency_units / UNIT)), 0), cap)


def _bump(tallies: dict[str, int], name: str, value: int) -> None:
    if value:
        tallies[name] = tallies.get(name, 0) + value
