"""Online behaviour segmentation: sequential k-means over a self-standardizing stream."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray
from river import base

from models.naming import match_centroids

__all__ = ["BehaviourClusterer"]

FloatArray = NDArray[np.float64]

# Uniform draws for the reservoir are taken from the generator in blocks: one numpy call
# per event would cost more than the rest of learn_one.
_DRAW_BLOCK = 1024
# A feature whose standard deviation is below this carries no information (all zeros so
# far, e.g. an engagement kind nobody has used yet): scale it by 1 rather than blow it up.
_MIN_SCALE = 1e-9
# Lloyd iterations stop once no centroid moves more than this (standardized units).
_LLOYD_TOL = 1e-6
# A freshly seeded solution replaces the refined one only if it lowers the reservoir's
# inertia by at least this fraction; smaller gains are noise and would churn behaviours.
_RESEED_GAIN = 0.03


class BehaviourClusterer(base.Clusterer):
    """Sequential k-means with online standardization, k-means++ warm-up and reservoir refresh.

    Each feature is standardized with an exponentially weighted running mean and
    variance (exact running statistics until ``memory`` points have been seen). The first
    ``warmup`` points are kept and clustered with k-means++ seeding and Lloyd's algorithm
    (best of ``n_init`` seedings). After that every point moves its nearest centroid by
    ``1 / min(count, memory)`` of the way (MacQueen's sequential k-means), which costs
    O(n_clusters * n_features) per point. A bounded reservoir sample of the stream is
    kept, and every ``refresh_every`` points the centroids are refined by a few Lloyd
    iterations over it, so that the order in which points arrived matters little. A
    refresh also tries a fresh k-means++ seeding and adopts it when it is clearly better,
    matching its centroids to the current ones (Hungarian assignment), so a cluster index
    keeps denoting the same group of customers across refreshes.

    Centroids are kept in feature units, not standardized ones: the standardization
    keeps moving, and distances are always computed with the current statistics.

    Parameters
    ----------
    n_clusters
        Number of clusters.
    warmup
        Points seen before the first clustering. Until then `predict_one` returns 0.
        At most `reservoir_size`.
    reservoir_size
        Points kept for refreshes. It bounds the model's memory: ``reservoir_size *
        n_features`` floats (720 kB for the 9 default features), plus O(n_clusters *
        n_features).
    refresh_every
        Points between two reservoir refreshes (0 disables them).
    memory
        Horizon, in points, of the running statistics, of the centroid learning rate and
        of the reservoir: older behaviour fades out with this half-life order of magnitude.
    n_init
        k-means++ seedings tried at warm-up and at each refresh.
    seed
        Seed of the random generator (seeding and reservoir sampling).

    Attributes
    ----------
    centers : dict[int, dict[str, float]]
        Centroid of each cluster in feature units.
    n_seen : int
        Points learned so far.

    Examples
    --------
    >>> from models.clustering import BehaviourClusterer

    >>> X = [
    ...     {"spend": 1.0, "visits": 2.0}, {"spend": 1.2, "visits": 1.8},
    ...     {"spend": 9.0, "visits": 8.5}, {"spend": 8.7, "visits": 9.1},
    ...     {"spend": 1.1, "visits": 2.2}, {"spend": 9.2, "visits": 8.8},
    ... ]
    >>> model = BehaviourClusterer(n_clusters=2, warmup=4, reservoir_size=8, seed=42)
    >>> for x in X:
    ...     model.learn_one(x)

    >>> model.predict_one({"spend": 1.0, "visits": 1.0})
    0
    >>> model.predict_one({"spend": 10.0, "visits": 10.0})
    1
    >>> {i: round(c["spend"], 2) for i, c in model.centers.items()}
    {0: 1.1, 1: 8.97}

    References
    ----------
    [^1]: MacQueen, J. (1967). Some methods for classification and analysis of
          multivariate observations. Proc. 5th Berkeley Symp. on Math. Statist. and Prob.
    [^2]: Arthur, D. and Vassilvitskii, S. (2007). k-means++: the advantages of careful
          seeding. SODA '07.
    [^3]: Aggarwal, C. (2006). On biased reservoir sampling in the presence of stream
          evolution. VLDB '06.

    """

    def __init__(
        self,
        n_clusters: int = 5,
        warmup: int = 1000,
        reservoir_size: int = 10_000,
        refresh_every: int = 10_000,
        memory: int = 100_000,
        n_init: int = 4,
        seed: int | None = None,
    ) -> None:
        if n_clusters < 1:
            raise ValueError("n_clusters must be >= 1")
        if not n_clusters <= warmup <= reservoir_size:
            raise ValueError("need n_clusters <= warmup <= reservoir_size")
        if refresh_every < 0 or memory < 1 or n_init < 1:
            raise ValueError("refresh_every must be >= 0, memory and n_init >= 1")
        self.n_clusters = n_clusters
        self.warmup = warmup
        self.reservoir_size = reservoir_size
        self.refresh_every = refresh_every
        self.memory = memory
        self.n_init = n_init
        self.seed = seed

        self.n_seen = 0
        self._rng = np.random.default_rng(seed)
        self._draws: list[float] = []
        self._names: tuple[str, ...] = ()
        self._mean: list[float] = []
        self._var: list[float] = []
        self._inv_scale: list[float] = []
        self._centroids: list[list[float]] = []
        self._counts: list[int] = []
        self._shares: list[float] = []
        self._spreads: list[float] = []
        self._reservoir: FloatArray = np.zeros((0, 0))
        self._reservoir_len = 0

    # -- river API -------------------------------------------------------------------

    def learn_one(self, x: Mapping[Any, float]) -> None:
        if not self._names:
            self._start(x)
        row = [float(x.get(name, 0.0)) for name in self._names]
        self.n_seen += 1
        self._update_scale(row)
        self._sample(row)

        if not self._centroids:
            if self.n_seen >= self.warmup:
                self._initialize()
            return

        closest, distance = self._closest(row)
        self._move(closest, row, distance)
        if self.refresh_every and self.n_seen % self.refresh_every == 0:
            self._refresh()

    def predict_one(self, x: Mapping[Any, float]) -> int:
        if not self._centroids:
            return 0
        return self._closest([float(x.get(name, 0.0)) for name in self._names])[0]

    @classmethod
    def _unit_test_params(cls) -> Any:
        yield {"n_clusters": 3, "warmup": 20, "reservoir_size": 50, "refresh_every": 40}

    # -- public state ----------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether warm-up is over and predictions mean something."""
        return bool(self._centroids)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Features in the column order of every array this model exposes."""
        return self._names

    @property
    def centers(self) -> dict[int, dict[str, float]]:
        return {
            index: dict(zip(self._names, centroid, strict=True))
            for index, centroid in enumerate(self._centroids)
        }

    @property
    def centroids(self) -> FloatArray:
        """``(n_clusters, n_features)`` centroids in feature units."""
        return np.array(self._centroids, dtype=np.float64).reshape(-1, len(self._names))

    @property
    def mean(self) -> FloatArray:
        """Running mean of each feature."""
        return np.array(self._mean, dtype=np.float64)

    @property
    def scale(self) -> FloatArray:
        """Running standard deviation of each feature (1 where it is ~0)."""
        return 1.0 / np.array(self._inv_scale, dtype=np.float64)

    @property
    def reservoir(self) -> FloatArray:
        """The kept sample of the stream, ``(n, n_features)`` in feature units (a copy)."""
        return self._reservoir[: self._reservoir_len].copy()

    @property
    def shares(self) -> FloatArray:
        """Recent share of points assigned to each cluster (sums to 1)."""
        return np.array(self._shares, dtype=np.float64)

    @property
    def spreads(self) -> FloatArray:
        """Recent mean squared standardized distance of a cluster's points to its centroid."""
        return np.array(self._spreads, dtype=np.float64)

    # -- internals -------------------------------------------------------------------

    def _start(self, x: Mapping[Any, float]) -> None:
        # Sorted so that the key order of the first dict cannot change any result.
        self._names = tuple(sorted((str(k) for k in x), key=str))
        d = len(self._names)
        self._mean = [0.0] * d
        self._var = [0.0] * d
        self._inv_scale = [1.0] * d
        self._reservoir = np.zeros((self.reservoir_size, d), dtype=np.float64)

    def _rate(self, n: int) -> float:
        return 1.0 / min(n, self.memory)

    def _update_scale(self, row: list[float]) -> None:
        # With rate 1/n these are exactly the running mean and (population) variance;
        # once n passes `memory` they become exponentially weighted.
        a = self._rate(self.n_seen)
        mean, var, inv = self._mean, self._var, self._inv_scale
        for j, value in enumerate(row):
            delta = value - mean[j]
            mean[j] += a * delta
            var[j] = (1.0 - a) * (var[j] + a * delta * delta)
            std = math.sqrt(var[j])
            inv[j] = 1.0 / std if std > _MIN_SCALE else 1.0

    def _uniform(self) -> float:
        if not self._draws:
            self._draws = self._rng.random(_DRAW_BLOCK).tolist()
        return self._draws.pop()

    def _sample(self, row: list[float]) -> None:
        if self._reservoir_len < self.reservoir_size:
            self._reservoir[self._reservoir_len] = row
            self._reservoir_len += 1
            return
        # Algorithm R while the stream is shorter than `memory`; past it every point
        # enters with a fixed probability, which biases the sample towards recent points
        # with the same horizon as the running statistics.
        slot = int(self._uniform() * min(self.n_seen, self.memory))
        if slot < self.reservoir_size:
            self._reservoir[slot] = row

    def _closest(self, row: list[float]) -> tuple[int, float]:
        inv = self._inv_scale
        best, best_distance = 0, math.inf
        for index, centroid in enumerate(self._centroids):
            distance = 0.0
            for value, center, s in zip(row, centroid, inv, strict=True):
                diff = (value - center) * s
                distance += diff * diff
            if distance < best_distance:
                best, best_distance = index, distance
        return best, best_distance

    def _move(self, index: int, row: list[float], distance: float) -> None:
        self._counts[index] += 1
        eta = self._rate(self._counts[index])
        centroid = self._centroids[index]
        for j, value in enumerate(row):
            centroid[j] += eta * (value - centroid[j])
        a = self._rate(self.n_seen - self.warmup + 1)
        shares = self._shares
        for k in range(len(shares)):
            shares[k] += a * ((1.0 if k == index else 0.0) - shares[k])
        self._spreads[index] += eta * (distance - self._spreads[index])

    def _standardized_reservoir(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        mean = np.array(self._mean, dtype=np.float64)
        inv = np.array(self._inv_scale, dtype=np.float64)
        points = (self._reservoir[: self._reservoir_len] - mean) * inv
        return points, mean, inv

    def _initialize(self) -> None:
        points, mean, inv = self._standardized_reservoir()
        centers, labels, _ = self._best_seeding(points)
        self._adopt(centers, labels, points, mean, inv, reset_counts=True)

    def _refresh(self) -> None:
        points, mean, inv = self._standardized_reservoir()
        current = (self.centroids - mean) * inv
        refined, labels, inertia = _lloyd(points, current)
        seeded, seeded_labels, seeded_inertia = self._best_seeding(points)
        if seeded_inertia < (1.0 - _RESEED_GAIN) * inertia:
            # A re-seed permutes indices: put each new centroid where its closest
            # predecessor was, so that index i still means the same behaviour.
            order = match_centroids(current, seeded)
            permutation = [0] * len(seeded)
            for new_index, old_index in order.items():
                permutation[old_index] = new_index
            inverse = np.argsort(permutation)
            refined, labels = seeded[permutation], inverse[seeded_labels]
        self._adopt(refined, labels, points, mean, inv, reset_counts=False)

    def _best_seeding(self, points: FloatArray) -> tuple[FloatArray, NDArray[np.intp], float]:
        best: tuple[FloatArray, NDArray[np.intp], float] | None = None
        for _ in range(self.n_init):
            candidate = _lloyd(points, _kmeans_plus_plus(points, self.n_clusters, self._rng))
            if best is None or candidate[2] < best[2]:
                best = candidate
        assert best is not None
        return best

    def _adopt(
        self,
        centers: FloatArray,
        labels: NDArray[np.intp],
        points: FloatArray,
        mean: FloatArray,
        inv: FloatArray,
        *,
        reset_counts: bool,
    ) -> None:
        sizes = np.bincount(labels, minlength=self.n_clusters)
        sq = ((points - centers[labels]) ** 2).sum(axis=1)
        spreads = np.bincount(labels, weights=sq, minlength=self.n_clusters) / np.maximum(sizes, 1)
        self._centroids = (centers / inv + mean).tolist()
        self._shares = (sizes / max(len(labels), 1)).tolist()
        self._spreads = spreads.tolist()
        if reset_counts:
            self._counts = [int(s) for s in sizes]
        else:
            # The reservoir stands for the whole stream: rescale its cluster sizes to
            # the points seen so each centroid keeps a learning rate that fits its history.
            total = sum(self._counts)
            self._counts = [max(1, round(total * s / max(len(labels), 1))) for s in sizes]


def _kmeans_plus_plus(points: FloatArray, k: int, rng: np.random.Generator) -> FloatArray:
    """k-means++ seeding: each next centre drawn with probability proportional to D^2."""
    centers = np.empty((k, points.shape[1]), dtype=np.float64)
    centers[0] = points[rng.integers(len(points))]
    closest = ((points - centers[0]) ** 2).sum(axis=1)
    for i in range(1, k):
        total = float(closest.sum())
        if total <= 0.0:
            # Fewer distinct points than clusters: duplicate centres are harmless here.
            centers[i] = points[rng.integers(len(points))]
            continue
        index = int(np.searchsorted(np.cumsum(closest), rng.random() * total))
        centers[i] = points[min(index, len(points) - 1)]
        closest = np.minimum(closest, ((points - centers[i]) ** 2).sum(axis=1))
    return centers


def _lloyd(
    points: FloatArray, centers: FloatArray, max_iter: int = 100
) -> tuple[FloatArray, NDArray[np.intp], float]:
    """Lloyd's iterations from ``centers``; returns centres, labels and inertia."""
    centers = centers.copy()
    k = len(centers)
    for _ in range(max_iter):
        distances = _sq_distances(points, centers)
        labels = distances.argmin(axis=1)
        sizes = np.bincount(labels, minlength=k)
        # One-hot matrix product: far faster than np.add.at for the per-cluster sums.
        sums = (labels[None, :] == np.arange(k)[:, None]).astype(np.float64) @ points
        new = centers.copy()
        filled = sizes > 0
        new[filled] = sums[filled] / sizes[filled, None]
        for i in np.flatnonzero(~filled):
            # An empty cluster takes the point worst served by the others, the usual
            # repair; it keeps k clusters alive without a random jump.
            worst = int(distances[np.arange(len(points)), labels].argmax())
            new[i] = points[worst]
            labels[worst] = i
        moved = float(np.abs(new - centers).max())
        centers = new
        if moved <= _LLOYD_TOL:
            break
    distances = _sq_distances(points, centers)
    labels = distances.argmin(axis=1)
    inertia = float(distances[np.arange(len(points)), labels].sum())
    return centers, labels, inertia


def _sq_distances(points: FloatArray, centers: FloatArray) -> FloatArray:
    """Squared Euclidean distances, ``(n_points, n_centers)``, via the expanded form."""
    cross = points @ centers.T
    out = (points * points).sum(axis=1)[:, None] - 2.0 * cross + (centers * centers).sum(axis=1)
    clipped: FloatArray = np.maximum(out, 0.0)
    return clipped
