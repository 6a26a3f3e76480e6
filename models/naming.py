"""Stable behaviour identity and human-readable behaviour labels.

Cluster indices are an artefact of one fitting run: re-seeding, re-learning from a
reservoir or loading a model trained elsewhere can permute them. Users see *behaviour ids*
(marketing automation is triggered on "entered behaviour 3"), so a behaviour id must follow
its centroid, not its index. :func:`match_centroids` pairs old and new centroids with
the Hungarian algorithm (minimum total distance, not greedy, so one badly placed
centroid cannot steal a neighbour's id); :func:`assign_stable_ids` turns that pairing
into ids, minting fresh ids for behaviours that did not exist before.

Labels describe a centroid in original units relative to the population ("top value,
very recent, very frequent"; "no spend, lapsed, no purchases in window"): value and
frequency by percentile among the customers of a sample who have any, recency in day
bands, counts where an absolute statement reads better ("one-off"). They are unique
across the behaviours of one model.
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
    "describe_behaviours",
    "match_centroids",
]

FloatArray = NDArray[np.float64]

# Recency bands in days. Recency keeps one meaning for everyone (a month is a month), and
# "recent relative to the population" misleads when most of the population has lapsed.
_RECENCY_BANDS = ((30, "very recent"), (90, "recent"), (180, "cooling"), (365, "lapsing"))
_LAPSED = "lapsed"
# Value and frequency levels: percentile of the centroid among the customers who have a
# positive value of that feature (among buyers, not among everyone: when most customers
# bought nothing in the window, every buyer would otherwise be "top").
_VALUE_LEVELS = ((0.9, "top value"), (0.7, "high value"), (0.4, "mid value"))
_LOW_VALUE = "low value"
_FREQUENCY_LEVELS = ((0.9, "very frequent"), (0.7, "frequent"))
_REPEAT = "repeat"
# An engagement kind is mentioned when the centroid sits in the top quarter of the
# customers who engage that way at all.
_ENGAGED_PERCENTILE = 0.75


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
    """Behaviour ids for ``current`` centroids that keep the ids of their matched predecessors.

    Parameters
    ----------
    previous_ids
        The ids of the previous centroids, row by row.
    previous, current
        Centroids in one standardized space.
    max_distance
        A pair further apart than this (Euclidean, standardized units) is not the same
        behaviour: the current centroid gets a fresh id. ``None`` keeps every pair.

    Returns
    -------
    One id per current centroid. Fresh ids count up from the largest id ever given out
    in ``previous_ids``, so a retired id is never reused for a different behaviour.

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


def _percentile(value: float, column: FloatArray) -> float:
    """Mid-rank percentile of ``value`` among the positive entries of ``column``."""
    positive = column[column > 0]
    if len(positive) == 0:
        return 0.5
    below = float((positive < value).sum())
    ties = float((positive == value).sum())
    return (below + 0.5 * ties) / len(positive)


def _band(p: float, levels: tuple[tuple[float, str], ...], otherwise: str) -> str:
    for threshold, word in levels:
        if p >= threshold:
            return word
    return otherwise


def _describe_one(
    centroid: Mapping[str, float], population: Mapping[str, FloatArray]
) -> tuple[list[str], dict[str, float]]:
    """Phrases for one centroid (value, recency, frequency, engagement) and the percentiles
    behind them, which :func:`describe_behaviours` uses to tell look-alikes apart."""
    original = to_original_units(centroid)
    ranks = {name: _percentile(value, population[name]) for name, value in centroid.items()}
    phrases: list[str] = []

    monetary = original.get(MONETARY.removeprefix("slog_"), 0.0)
    if monetary <= -0.5:
        phrases.append("net refunds")
    elif monetary < 0.5:
        phrases.append("no spend")
    else:
        phrases.append(_band(ranks.get(MONETARY, 0.0), _VALUE_LEVELS, _LOW_VALUE))

    recency = original.get(RECENCY.removeprefix("log_"))
    if recency is not None:
        phrases.append(next((word for days, word in _RECENCY_BANDS if recency <= days), _LAPSED))

    frequency = original.get(FREQUENCY.removeprefix("log_"), 0.0)
    if frequency < 0.5:
        phrases.append("no purchases in window")
    elif frequency < 1.5:
        phrases.append("one-off")
    else:
        phrases.append(_band(ranks.get(FREQUENCY, 0.0), _FREQUENCY_LEVELS, _REPEAT))

    engaged = [
        name.removeprefix(ENGAGEMENT_PREFIX)
        for name, value in centroid.items()
        if name.startswith(ENGAGEMENT_PREFIX) and value > 0 and ranks[name] >= _ENGAGED_PERCENTILE
    ]
    if engaged:
        phrases.append("engaged (" + ", ".join(engaged) + ")")
    return phrases, ranks


def _qualifier(feature: str) -> str:
    plain = {
        MONETARY: "value",
        RECENCY: "recency days",
        FREQUENCY: "frequency",
        AVG_ORDER_VALUE: "order value",
    }
    return plain.get(feature, feature.removeprefix(ENGAGEMENT_PREFIX).replace("_", " "))


def describe_behaviours(
    centroids: FloatArray,
    feature_names: Sequence[str],
    population: FloatArray,
) -> list[str]:
    """One unique, descriptive label per centroid.

    Parameters
    ----------
    centroids
        ``(n_clusters, n_features)`` in feature units (the log-compressed features of
        :mod:`models.features`, not standardized).
    feature_names
        Column names of ``centroids`` and ``population``.
    population
        A sample of customers' feature rows (the model's reservoir): "high value" or
        "frequent" are percentiles among its customers with a positive value.

    The words: value ``top``/``high``/``mid``/``low`` (90th/70th/40th percentile among
    buyers), ``no spend`` or ``net refunds``; recency by days (30/90/180/365: ``very
    recent``, ``recent``, ``cooling``, ``lapsing``, else ``lapsed``); frequency ``no
    purchases in window``, ``one-off``, then ``repeat``/``frequent``/``very frequent``
    (70th/90th percentile); ``engaged (kind, ...)`` for engagement kinds in the top quarter.
    Behaviours that would read the same are told apart by the feature where they differ
    most ("(higher value)" / "(lower value)", or a rank among three or more), so labels are
    always unique.

    >>> names = ["log_recency_days", "log_frequency", "slog_monetary", "slog_avg_order_value"]
    >>> rng = np.random.default_rng(0)
    >>> population = np.log1p(rng.exponential([200, 2, 80, 30], size=(1000, 4)))
    >>> centroids = np.log1p(np.array([[7, 12, 900, 75], [500, 0, 0, 0], [60, 1, 40, 40]]))
    >>> describe_behaviours(centroids, names, population)  # doctest: +NORMALIZE_WHITESPACE
    ['top value, very recent, very frequent', 'no spend, lapsed, no purchases in window',
     'mid value, recent, one-off']
    """
    columns = {name: population[:, j] for j, name in enumerate(feature_names)}
    phrases: list[str] = []
    rank_rows: list[list[float]] = []
    for row in centroids:
        words, ranks = _describe_one(
            dict(zip(feature_names, (float(v) for v in row), strict=True)), columns
        )
        phrases.append(", ".join(words))
        rank_rows.append([ranks[name] for name in feature_names])
    ranks_array = np.array(rank_rows, dtype=np.float64)
    # Raw differences break ties between centroids that share every percentile.
    tiebreak = centroids * 1e-9

    groups: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(phrases):
        groups[label].append(index)
    labels = list(phrases)
    for label, members in groups.items():
        if len(members) < 2:
            continue
        keyed = ranks_array[members] + tiebreak[members]
        spread = keyed.max(axis=0) - keyed.min(axis=0)
        column = int(np.argmax(spread))
        what = _qualifier(feature_names[column])
        ranked = sorted(members, key=lambda i: float(ranks_array[i, column] + tiebreak[i, column]))
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
