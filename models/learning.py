"""Behaviours learned from the stream: exact, mergeable per-behaviour sufficient statistics.

Every worker keeps, per shard, the sufficient statistics of the customers it holds: per
behaviour segment the number of customers, the sums of their feature vectors and the
sums of their squares, plus the same for customers not yet assigned (no model yet). A
customer contributes its *current* vector once: when it is re-scored, its previous
contribution (kept on its state) is taken out and the new one put in. So the statistics
always describe the population as it stands, and the model follows drift by replacement:
a customer who lapses moves its contribution, a customer's old behaviour is forgotten the
moment it changes, and nothing decays by a guessed rate.

Exactness: vectors are stored as integers (features times ``UNIT``, rounded) and the
squares are derived from those integers, so adding and removing are exact and the merged
statistics are a sum that does not depend on the order of commits or shards. Being part
of the same atomic commit as the state and offsets, a step's statistics count once.

A coordinator merges the shards' statistics (a sum), turns them into centroids (the mean
of each behaviour's members: one Lloyd step over the whole population) and a scaling (the
population's mean and standard deviation), and publishes a new snapshot when a centroid
moved more than a given distance. Before any model exists, the first customers' vectors
seed one with k-means++ (deterministic for the same seeds).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
from numpy.typing import NDArray
from river import stats

from models.clustering import _kmeans_plus_plus, _lloyd
from models.naming import describe_behaviours
from models.snapshot import Behaviour, BehaviourSnapshot

__all__ = [
    "PREFIX",
    "UNASSIGNED",
    "UNIT",
    "WEIGHT_UNIT",
    "Contribution",
    "PopulationStats",
    "add_contribution",
    "chosen_seeds",
    "in_feature_order",
    "merged_snapshot",
    "seed_snapshot",
    "to_units",
]

FloatArray = NDArray[np.float64]

# Fixed point: a feature value v is stored as round(v * UNIT). Features are logs (|v| < 40),
# so a customer's units stay below 4e7 and its squares (units^2 // UNIT) below 2e9: a
# 64-bit Redis counter holds the sums of billions of customers.
UNIT = 1_000_000
# Tally names: learn:n:<seg>, learn:s:<seg>:<j>, learn:q:<seg>:<j>, learn:events,
# learn:steps. <seg> is a behaviour id, or UNASSIGNED before a model exists. Seeds:
# learn:seed:<shard>:<ordinal>:<j> and learn:seed:<shard>:<ordinal>:n (1 while the seed
# stands, 0 once its customer is erased): named by place, never by customer id.
PREFIX = "learn:"
# Forgetting (a half-life in days, off by default): a contribution's weight 2^(-age /
# half-life) in fixed point. Weighted sums are (w * units) // WEIGHT_UNIT: below the
# unweighted ones, so the 64-bit counters hold them just the same.
WEIGHT_UNIT = 1 << 20
UNASSIGNED = "-"
# A behaviour's centroid needs this many members to move; fewer keep the previous centroid.
MIN_MEMBERS = 1
# Standard deviations below this carry no information: scale by 1 instead.
_MIN_SCALE = 1e-9
# Rows of the synthetic sample the labels are described against (see _label_sample).
_LABEL_SAMPLE = 4000


def in_feature_order(snapshot: BehaviourSnapshot, names: Sequence[str]) -> BehaviourSnapshot:
    """``snapshot`` with its columns in ``names`` order (a batch-learned snapshot keeps its
    features sorted by name; the statistics keep them in ``FeatureSpec`` order)."""
    if tuple(names) == snapshot.feature_names:
        return snapshot
    if set(names) != set(snapshot.feature_names):
        raise ValueError("the snapshot was learned on other features")
    at = [snapshot.feature_names.index(name) for name in names]
    return replace(
        snapshot,
        feature_names=tuple(names),
        mean=tuple(snapshot.mean[i] for i in at),
        scale=tuple(snapshot.scale[i] for i in at),
        behaviours=tuple(
            replace(s, centroid=tuple(s.centroid[i] for i in at)) for s in snapshot.behaviours
        ),
    )


def to_units(vector: Sequence[float]) -> tuple[int, ...]:
    """A feature vector in fixed point (what the statistics and the state keep)."""
    return tuple(round(v * UNIT) for v in vector)


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one customer adds to the statistics: its behaviour (None: unassigned) and vector."""

    behaviour: int | None
    units: tuple[int, ...]

    @classmethod
    def from_list(cls, raw: Sequence[int]) -> Contribution:
        behaviour = int(raw[0])
        return cls(None if behaviour < 0 else behaviour, tuple(int(v) for v in raw[1:]))


def add_contribution(tallies: dict[str, int], contribution: Contribution, sign: int) -> None:
    """Add (sign 1) or remove (sign -1) a customer's contribution to a tally dict."""
    behaviour = UNASSIGNED if contribution.behaviour is None else str(contribution.behaviour)
    key = PREFIX + "n:" + behaviour
    tallies[key] = tallies.get(key, 0) + sign
    for j, value in enumerate(contribution.units):
        s, q = f"{PREFIX}s:{behaviour}:{j}", f"{PREFIX}q:{behaviour}:{j}"
        tallies[s] = tallies.get(s, 0) + sign * value
        tallies[q] = tallies.get(q, 0) + sign * (value * value // UNIT)


@dataclass
class BehaviourSums:
    n: int = 0
    sums: list[int] = field(default_factory=list)
    squares: list[int] = field(default_factory=list)
    # Forgetting: the total weight of the weighted members, and how many they are.
    weight: int = 0
    weighted: int = 0

    @property
    def mass(self) -> float:
        """What the sums are sums over: the members, each weighing 1, or its weight when
        forgetting (members learned without a weight still count 1). Just ``n`` when no
        member is weighted, so the statistics without forgetting are unchanged."""
        if not self.weighted:
            return self.n
        return self.n - self.weighted + self.weight / WEIGHT_UNIT


@dataclass
class PopulationStats:
    """The merged statistics of every shard (the sum of their tallies)."""

    dims: int
    behaviours: dict[str | int, BehaviourSums] = field(default_factory=dict)
    # (shard, ordinal) -> the seed's vector, for the seeds standing (see seed_snapshot)
    seeds: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    events: int = 0
    steps: int = 0

    @classmethod
    def from_tallies(cls, tallies: Mapping[str, int], dims: int) -> PopulationStats:
        out = cls(dims)
        seeds: dict[tuple[int, int], dict[str, int]] = defaultdict(dict)
        for name, value in tallies.items():
            if not name.startswith(PREFIX):
                continue
            parts = name[len(PREFIX) :].split(":")
            kind = parts[0]
            if kind == "events":
                out.events = value
            elif kind == "steps":
                out.steps = value
            elif kind == "seed":
                if len(parts) == 4 and parts[1].isdigit() and parts[2].isdigit():
                    seeds[int(parts[1]), int(parts[2])][parts[3]] = value
            elif kind in ("n", "s", "q", "w", "nw"):
                key: str | int = parts[1] if parts[1] == UNASSIGNED else int(parts[1])
                sums = out.behaviours.setdefault(key, BehaviourSums(0, [0] * dims, [0] * dims))
                if kind == "n":
                    sums.n = value
                elif kind == "w":
                    sums.weight = value
                elif kind == "nw":
                    sums.weighted = value
                else:
                    (sums.sums if kind == "s" else sums.squares)[int(parts[2])] = value
        for place, fields in seeds.items():
            if fields.get("n", 0) > 0:  # 0: its customer was erased (the fields are 0 too)
                out.seeds[place] = [fields.get(str(j), 0) for j in range(dims)]
        return out

    @property
    def customers(self) -> int:
        return sum(s.n for s in self.behaviours.values())

    def scaling(self) -> tuple[FloatArray, FloatArray]:
        """Mean and standard deviation of every feature over the whole population.

        river's ``stats.Var`` merges the behaviours' partial statistics (Chan et al.), so the
        scaling is learned incrementally with the product's online-learning library.
        """
        mean, scale = np.zeros(self.dims), np.ones(self.dims)
        for j in range(self.dims):
            total = stats.Var(ddof=0)
            for part in self.behaviours.values():
                mass = part.mass
                if part.n <= 0 or mass <= 0:
                    continue
                m = part.sums[j] / UNIT / mass
                var = max(part.squares[j] / UNIT / mass - m * m, 0.0)
                total += stats.Var._from_state(mass, m, var, ddof=0)
            if total.n:
                mean[j] = total.mean.get()
                std = math.sqrt(max(total.get(), 0.0))
                scale[j] = std if std > _MIN_SCALE else 1.0
        return mean, scale

    def centroid(self, behaviour: int) -> FloatArray | None:
        part = self.behaviours.get(behaviour)
        if part is None or part.n < MIN_MEMBERS or part.mass <= 0:
            return None
        return np.array(part.sums, dtype=np.float64) / UNIT / part.mass

    def spread(self, behaviour: int, scale: FloatArray) -> float:
        """Mean squared standardized distance of the behaviour's members to their mean."""
        part = self.behaviours.get(behaviour)
        if part is None or part.n <= 0 or part.mass <= 0:
            return 0.0
        m = np.array(part.sums, dtype=np.float64) / UNIT / part.mass
        var = np.maximum(np.array(part.squares, dtype=np.float64) / UNIT / part.mass - m * m, 0.0)
        return float((var / (scale * scale)).sum())


def seed_snapshot(
    population: PopulationStats,
    names: Sequence[str],
    k: int,
    seeds_wanted: int,
    created_at: datetime,
    *,
    partitions: int = 1,
    seed: int = 0,
) -> BehaviourSnapshot | None:
    """Version 1, from the first ``seeds_wanted`` seed customers (k-means++ then Lloyd on
    them), or None while too few have been seen (``chosen_seeds``). Deterministic: the
    seeds chosen are a function of each shard's input order, and the generator is seeded."""
    chosen = chosen_seeds(population.seeds, seeds_wanted, partitions)
    if chosen is None or len(chosen) < k:
        return None
    points = np.array([population.seeds[c] for c in chosen], dtype=np.float64) / UNIT
    mean, scale = population.scaling()
    if not population.customers:
        mean, scale = points.mean(axis=0), np.maximum(points.std(axis=0), 1.0)
    z = (points - mean) / scale
    rng = np.random.default_rng(seed)
    centres, labels, _ = _lloyd(z, _kmeans_plus_plus(z, k, rng))
    centroids = centres * scale + mean
    sizes = np.bincount(labels, minlength=k)
    shares = (sizes / max(len(labels), 1)).tolist()
    spreads = [
        float(((z[labels == i] - centres[i]) ** 2).sum(axis=1).mean()) if sizes[i] else 0.0
        for i in range(k)
    ]
    return _snapshot(
        1, created_at, names, mean, scale, list(range(k)), centroids, shares, spreads, points, 0
    )


def chosen_seeds(
    seeds: Mapping[tuple[int, int], object], wanted: int, partitions: int
) -> list[tuple[int, int]] | None:
    """The seeds version 1 is learned from, or None while they are not all known.

    Each shard writes the vectors of its first customers (in its input order) with
    ordinals 0, 1, ...; the first ``ceil(wanted / partitions)`` standing seeds of every
    shard are due. Once every shard has that many, the first ``wanted`` of them in
    (rank in its shard, shard) order are chosen: the same whichever shard got there first,
    so the same input gives the same version 1. A shard that lags far behind (an idle
    partition) must not hold learning up forever: once ``2 * wanted`` seeds stand, the
    first ``wanted`` in that order are chosen as they are.
    """
    per_shard: dict[int, list[int]] = defaultdict(list)
    for shard, ordinal in seeds:
        per_shard[shard].append(ordinal)
    quota = -(-wanted // max(partitions, 1))
    ready = all(len(per_shard.get(shard, ())) >= quota for shard in range(partitions))
    if not ready and len(seeds) < 2 * wanted:
        return None
    ranked = sorted(
        (rank, shard, ordinal)
        for shard, ordinals in per_shard.items()
        for rank, ordinal in enumerate(sorted(ordinals)[:quota] if ready else sorted(ordinals))
    )
    return [(shard, ordinal) for _, shard, ordinal in ranked[:wanted]]


@dataclass(frozen=True)
class Merge:
    """What a merge found: the candidate snapshot and how far its centroids moved."""

    snapshot: BehaviourSnapshot
    shift: float  # largest centroid move, in the new scaling's standardized units
    customers: int  # customers the statistics describe (assigned to a behaviour)


def merged_snapshot(
    population: PopulationStats, current: BehaviourSnapshot, created_at: datetime
) -> Merge:
    """The next model: each behaviour's centroid becomes the mean of its members (a behaviour
    with no members keeps its centroid), the scaling the population's. Ids stay; labels
    are described anew (``describe_behaviours``) against a sample drawn from the statistics."""
    mean, scale = population.scaling()
    ids = [s.behaviour_id for s in current.behaviours]
    old = np.array([s.centroid for s in current.behaviours], dtype=np.float64)
    centroids = old.copy()
    for i, behaviour_id in enumerate(ids):
        centroid = population.centroid(behaviour_id)
        if centroid is not None:
            centroids[i] = centroid
    shift = float(np.sqrt((((centroids - old) / scale) ** 2).sum(axis=1)).max())
    counts = [max(population.behaviours.get(i, BehaviourSums()).n, 0) for i in ids]
    total = sum(counts)
    shares = [
        c / total if total else s.share for c, s in zip(counts, current.behaviours, strict=True)
    ]
    spreads = [population.spread(i, scale) for i in ids]
    sample = _label_sample(population, ids, scale)
    snapshot = _snapshot(
        current.version + 1,
        created_at,
        current.feature_names,
        mean,
        scale,
        ids,
        centroids,
        shares,
        spreads,
        sample if len(sample) else centroids,
        population.events,
    )
    return Merge(snapshot, shift, total)


def _label_sample(population: PopulationStats, ids: Sequence[int], scale: FloatArray) -> FloatArray:
    """Rows drawn from each behaviour's mean and variance, in proportion to its members: the
    labels' percentiles ("top value") need a population sample, and the statistics are all
    that is kept. Seeded, so the labels are a function of the statistics."""
    rng = np.random.default_rng(0)
    total = sum(max(population.behaviours.get(i, BehaviourSums()).mass, 0) for i in ids)
    rows: list[FloatArray] = []
    for i in ids:
        part = population.behaviours.get(i)
        if part is None or part.n <= 0 or part.mass <= 0 or total <= 0:
            continue
        m = np.array(part.sums, dtype=np.float64) / UNIT / part.mass
        var = np.maximum(np.array(part.squares, dtype=np.float64) / UNIT / part.mass - m * m, 0.0)
        size = max(1, round(_LABEL_SAMPLE * part.mass / total))
        rows.append(m + rng.standard_normal((size, len(m))) * np.sqrt(var))
    return np.vstack(rows) if rows else np.zeros((0, len(scale)))


def _snapshot(
    version: int,
    created_at: datetime,
    names: Sequence[str],
    mean: FloatArray,
    scale: FloatArray,
    ids: Sequence[int],
    centroids: FloatArray,
    shares: Sequence[float],
    spreads: Sequence[float],
    sample: FloatArray,
    events: int,
) -> BehaviourSnapshot:
    labels = describe_behaviours(centroids, list(names), sample)
    return BehaviourSnapshot(
        version=version,
        created_at=created_at,
        feature_names=tuple(names),
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        n_seen=events,
        behaviours=tuple(
            Behaviour(
                behaviour_id=int(ids[i]),
                label=labels[i],
                centroid=tuple(float(v) for v in centroids[i]),
                share=float(shares[i]),
                spread=float(spreads[i]),
            )
            for i in range(len(ids))
        ),
    )
