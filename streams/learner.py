"""The worker's learning step: each re-scored customer updates its shard's segment statistics.

Called once per atomic step (``ShardLogic._step``) with the states the step writes. For
each, the customer's previous contribution (kept on its state) is taken out of the
statistics and its current one put in: its feature vector as of the state's clock, in
the segment the model in force assigns (or unassigned before there is a model). The
increments go into ``Batch.tallies`` under ``learn:`` names, so the shard's ``stats`` hash
holds them and they are written by the same commit as the states and offsets: a crash
neither loses nor double-counts a learning step (models/learning.py, docs/state-layout.md).

Before any model exists, the vectors of customers learned for the first time also become
seeds (``learn:seed:<customer id>:<j>``), at most ``seeds_wanted`` per shard and lease,
from which the coordinator seeds the first model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from models.features import DEFAULT_FEATURE_SPEC, FeatureSpec
from models.learning import PREFIX, UNIT, Contribution, add_contribution, in_feature_order
from models.snapshot import SegmentSnapshot
from scoring.engine import Scorer
from scoring.state import CustomerState
from tierstream.segments import SnapshotBehaviour


class Learner:
    """One shard's learning step (pure: it only fills a step's tallies)."""

    def __init__(self, seeds_wanted: int, spec: FeatureSpec = DEFAULT_FEATURE_SPEC) -> None:
        self.seeds_wanted = seeds_wanted
        self.seeds_taken = 0  # seeds this shard wrote under the current lease
        self.cap = spec.recency_cap_days
        self.kinds = spec.engagement_kinds
        self.names = spec.names
        self._snapshot: SegmentSnapshot | None = None
        self._assign: tuple[tuple[float, ...], tuple[float, ...], list[tuple[float, ...]]] = (
            (),
            (),
            [],
        )
        self._ids: list[int] = []

    def learn(
        self, scorer: Scorer, states: Iterable[CustomerState], tallies: dict[str, int], events: int
    ) -> None:
        model = scorer.behaviour
        snapshot = model.snapshot if isinstance(model, SnapshotBehaviour) else None
        if snapshot is not self._snapshot:
            self._prepare(snapshot)
        learned = 0
        for state in states:
            if state.clock_day is None:
                continue
            units = self._units(scorer, state)
            segment = self._segment(units) if snapshot is not None else None
            new = [-1 if segment is None else segment, *units]
            old = state.learned
            if old == new:
                continue
            if old is not None:
                add_contribution(tallies, Contribution.from_list(old), -1)
            elif snapshot is None and self.seeds_taken < self.seeds_wanted:
                self.seeds_taken += 1
                for j, value in enumerate(units):
                    tallies[f"{PREFIX}seed:{state.customer_id}:{j}"] = value
            add_contribution(tallies, Contribution(segment, units), 1)
            state.learned = new
            learned += 1
        if learned:
            tallies[PREFIX + "steps"] = tallies.get(PREFIX + "steps", 0) + learned
        if events:
            tallies[PREFIX + "events"] = tallies.get(PREFIX + "events", 0) + events

    def _units(self, scorer: Scorer, state: CustomerState) -> tuple[int, ...]:
        # models.features.build_features, inlined into fixed point (the hot path).
        assert state.clock_day is not None
        values = scorer.values(state, state.clock_day)
        recency = values.recency_days
        recency = self.cap if recency is None else min(max(recency, 0), self.cap)
        frequency = max(values.frequency, 0)
        monetary = float(values.monetary)
        average = monetary / frequency if frequency > 0 else 0.0
        units = [
            round(math.log1p(recency) * UNIT),
            round(math.log1p(frequency) * UNIT),
            round(math.copysign(math.log1p(abs(monetary)), monetary) * UNIT) if monetary else 0,
            round(math.copysign(math.log1p(abs(average)), average) * UNIT) if average else 0,
        ]
        engagement = values.engagement
        for kind in self.kinds:
            score = float(engagement.get(kind, 0)) if engagement else 0.0
            units.append(round(math.log1p(score) * UNIT) if score > 0 else 0)
        return tuple(units)

    def _prepare(self, snapshot: SegmentSnapshot | None) -> None:
        self._snapshot = snapshot
        if snapshot is None:
            return
        snapshot = in_feature_order(snapshot, self.names)
        mean = tuple(m * UNIT for m in snapshot.mean)
        inv = tuple(1.0 / (s * UNIT) for s in snapshot.scale)
        centres = [tuple(row) for row in snapshot.standardized_centroids().tolist()]
        self._assign = (mean, inv, centres)
        self._ids = [s.segment_id for s in snapshot.segments]

    def _segment(self, units: tuple[int, ...]) -> int:
        """The nearest standardized centroid (models.snapshot.assign, on fixed point)."""
        mean, inv, centres = self._assign
        z = [(u - m) * s for u, m, s in zip(units, mean, inv, strict=True)]
        best, best_distance = 0, math.inf
        for index, centre in enumerate(centres):
            distance = 0.0
            for value, c in zip(z, centre, strict=True):
                diff = value - c
                distance += diff * diff
            if distance < best_distance:
                best, best_distance = index, distance
        return self._ids[best]
