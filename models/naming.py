"""Stable segment identity and human-readable segment labels.

Cluster indices are an artefact of one fitting run: re-seeding, re-learning from a
reservoir or loading a model trained elsewhere can permute them. Users see *segment ids*
(marketing automation is triggered on "entered segment 3"), so a segment id must follow
its centroid, not its index. :func:`match_centroids` pairs old and new centroids with
the Hungarian algorithm (minimum total distance, not greedy, so one badly placed
centroid cannot steal a neighbour's id); :func:`assign_stable_ids` turns that pairing
into ids, minting fresh ids for segments that did not exist before.

Labels describe a centroid relative to the population ("high value, recent, frequent"),
are derived from the standardized centroid (how many population standard deviations it
sits from the mean) and checked in original units where an absolute statement reads
better ("no purchases in window"), and are unique across the segments of one model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

from models.features import (
    AVG_ORDER_VALUE,
    ENGAGEMENT_PREFIX,
    FREQUENCY,
    MONETARY,
    RECENCY,
    to_original_units,
)

__all__ = [
    "assign_stable_ids",
    "describe_segments",
    "match_centroids",
]

FloatArray = NDArray[np.float64]

# A centroid this many population standard deviations off the mean earns an adjective.
_NOTABLE_Z = 0.35
_STRONG_Z = 1.0


def match_centroids(previous: FloatArray, current: FloatArray) -> dict[int, int]:
    """Pair current centroids with previous ones at minimum total squared distance.

    Both arrays are ``(n_clusters, n_features)`` in the same (standardized) space; the
    counts may differ. Returns ``{current_index: previous_index}`` for the
    ``min(len(previous), len(current))`` pairs; unpaired current centroids are new.

    >>> old = np.array([[0.0, 0.0], [5.0, 5.0], [10.0, 0.0]])
    >>> match_centroids(old, old[[2, 0, 1]] + 0.1)
    {0: 2, 1: 0, 2: 1}
    """
    if len(previous) == 0 or len(current) == 0:
        return {}
    cost = ((current[:, None, :] - previous[None, :, :]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return {int(r): int(c) for r, c in zip(rows, cols, strict=True)}


def assign_stable_ids(
    previous_ids: Sequence[int],
    previous: FloatArray,
    current: FloatArray,
    *,
    max_distance: float | None = None,
) -> list[int]:
    """Segment ids for ``current`` centroids that keep the ids of their matched predecessors.

    Parameters
    ----------
    previous_ids
        The ids of the previous centroids, row by row.
    previous, current
        Centroids in one standardized space.
    max_distance
        A pair further apart than this (Euclidean, standardized units) is not the same
        segment: the current centroid gets a fresh id. ``None`` keeps every pair.

    Returns
    -------
    One id per current centroid. Fresh ids count up from the largest id ever given out
    in ``previous_ids``, so a retired id is never reused for a different segment.

    >>> old = np.array([[0.0, 0.0], [5.0, 5.0]])
    >>> assign_stable_ids([7, 3], old, np.array([[5.1, 5.0], [0.0, 0.1], [20.0, 20.0]]))
    [3, 7, 8]
    """
    pairs = match_centroids(previous, current)
    next_id = max(previous_ids, default=-1) + 1
    ids: list[int] = []
    for index in range(len(current)):
        prev = pairs.get(index)
        if prev is not None and max_distance is not None:
            if float(np.linalg.norm(current[index] - previous[prev])) > max_distance:
                prev = None
        if prev is None:
            ids.append(next_id)
            next_id += 1
        else:
            ids.append(int(previous_ids[prev]))
    return ids


def _level(z: float, high: str, low: str, strong_high: str = "", strong_low: str = "") -> str:
    if z >= _STRONG_Z and strong_high:
        return strong_high
    if z >= _NOTABLE_Z:
        return high
    if z <= -_STRONG_Z and strong_low:
        return strong_low
    if z <= -_NOTABLE_Z:
        return low
    return ""


def _describe_one(z: Mapping[str, float], original: Mapping[str, float]) -> list[str]:
    """Phrases for one centroid: value, recency, frequency, then engagement."""
    phrases: list[str] = []

    monetary = original.get(MONETARY.removeprefix("slog_"), 0.0)
    if monetary < 0.5:
        phrases.append("no spend")
    else:
        phrases.append(
            _level(z.get(MONETARY, 0.0), "high value", "low value", "top value", "") or "mid value"
        )

    # Recency: lower is better, so the sign flips.
    phrases.append(
        _level(-z.get(RECENCY, 0.0), "recent", "lapsed", "very recent", "long lapsed") or "cooling"
    )

    frequency = original.get(FREQUENCY.removeprefix("log_"), 0.0)
    if frequency < 0.5:
        phrases.append("no purchases in window")
    elif frequency < 1.5:
        phrases.append("one-off")
    else:
        phrases.append(
            _level(z.get(FREQUENCY, 0.0), "frequent", "occasional", "very frequent", "") or "repeat"
        )

    engaged = [
        name.removeprefix(ENGAGEMENT_PREFIX)
        for name, value in z.items()
        if name.startswith(ENGAGEMENT_PREFIX) and value >= _NOTABLE_Z
    ]
    if engaged:
        phrases.append("engaged (" + ", ".join(engaged) + ")")
    return phrases


def _qualifier(feature: str) -> str:
    plain = {
        MONETARY: "value",
        RECENCY: "recency days",
        FREQUENCY: "frequency",
        AVG_ORDER_VALUE: "order value",
    }
    return plain.get(feature, feature.removeprefix(ENGAGEMENT_PREFIX).replace("_", " "))


def describe_segments(
    centroids: FloatArray,
    feature_names: Sequence[str],
    mean: FloatArray,
    scale: FloatArray,
) -> list[str]:
    """One unique, descriptive label per centroid.

    Parameters
    ----------
    centroids
        ``(n_clusters, n_features)`` in feature units (the log-compressed features of
        :mod:`models.features`, not standardized).
    feature_names
        Column names of ``centroids``.
    mean, scale
        Population mean and standard deviation per feature: "high" and "low" are
        relative to these.

    Two segments that would read the same are told apart by the feature on which they
    differ most ("(higher value)" / "(lower value)", or a rank for three or more), and as a
    last resort by a number, so labels are always unique.

    >>> names = ["log_recency_days", "log_frequency", "slog_monetary", "slog_avg_order_value"]
    >>> mean, scale = np.array([4.0, 0.5, 2.0, 1.5]), np.array([1.5, 0.6, 2.0, 1.8])
    >>> centroids = np.array([[1.5, 1.8, 6.0, 4.5], [6.2, 0.0, 0.0, 0.0], [3.5, 0.7, 3.9, 3.9]])
    >>> describe_segments(centroids, names, mean, scale)  # doctest: +NORMALIZE_WHITESPACE
    ['top value, very recent, very frequent', 'no spend, long lapsed, no purchases in window',
     'high value, cooling, one-off']
    """
    z_rows = (centroids - mean) / scale
    phrases = []
    for z_row, raw_row in zip(z_rows, centroids, strict=True):
        z = dict(zip(feature_names, (float(v) for v in z_row), strict=True))
        original = to_original_units(
            dict(zip(feature_names, (float(v) for v in raw_row), strict=True))
        )
        phrases.append(", ".join(_describe_one(z, original)))

    groups: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(phrases):
        groups[label].append(index)
    labels = list(phrases)
    for label, members in groups.items():
        if len(members) < 2:
            continue
        # The column where the look-alikes differ most, in population standard deviations.
        spread = z_rows[members].max(axis=0) - z_rows[members].min(axis=0)
        column = int(np.argmax(spread))
        what = _qualifier(feature_names[column])
        ranked = sorted(members, key=lambda i: float(z_rows[i, column]))
        for rank, index in enumerate(ranked):
            if len(members) == 2:
                labels[index] = f"{label} ({'lower' if rank == 0 else 'higher'} {what})"
            else:
                labels[index] = f"{label} ({what} rank {rank + 1} of {len(members)})"

    seen: dict[str, int] = defaultdict(int)
    unique: list[str] = []
    for label in labels:
        seen[label] += 1
        unique.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return unique
