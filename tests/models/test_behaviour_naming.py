from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from models.features import DEFAULT_FEATURE_SPEC
from models.naming import assign_stable_ids, describe_behaviours, match_centroids

NAMES = list(DEFAULT_FEATURE_SPEC.names)
D = len(NAMES)

# Customers: recency ~ exp(200 days), orders ~ exp(2), spend ~ exp($80), order value ~
# exp($30), a third of them clicking emails.
_rng = np.random.default_rng(0)
_raw = _rng.exponential([200, 2, 80, 30, 1, 1, 20, 1, 1], size=(3000, D))
_raw[:, [4, 5, 7, 8]] = 0.0
_raw[_rng.random(3000) < 0.67, 6] = 0.0
POPULATION = np.log1p(_raw)


def centroid(recency: float, frequency: float, monetary: float, **engagement: float) -> list[float]:
    row = [
        math.log1p(recency),
        math.log1p(frequency),
        math.log1p(monetary),
        math.log1p(monetary / frequency) if frequency else 0.0,
    ]
    row += [math.log1p(engagement.get(kind, 0.0)) for kind in DEFAULT_FEATURE_SPEC.engagement_kinds]
    return row


CENTROIDS = np.array(
    [
        centroid(7, 12, 900),
        centroid(500, 0, 0),
        centroid(60, 1, 25),
        centroid(20, 4, 150, email_click=30),
        centroid(200, 2, 40),
    ]
)


@pytest.mark.parametrize("permutation", list(itertools.permutations(range(5)))[::7])
def test_relabelling_after_a_permutation_keeps_ids(permutation: tuple[int, ...]) -> None:
    ids = [10, 11, 12, 13, 14]
    rng = np.random.default_rng(sum(permutation))
    moved = CENTROIDS[list(permutation)] + rng.normal(scale=0.05, size=CENTROIDS.shape)
    new_ids = assign_stable_ids(ids, CENTROIDS, moved)
    assert new_ids == [ids[p] for p in permutation]


def test_hungarian_beats_greedy_on_a_crowded_pair() -> None:
    # Greedy would give new[0] to old[1] (distance 0.9) and leave new[1] far from old[0].
    old = np.array([[0.0], [2.0]])
    new = np.array([[1.1], [3.0]])
    assert match_centroids(old, new) == {0: 0, 1: 1}


def test_new_segments_get_fresh_ids_and_retired_ids_are_not_reused() -> None:
    old = CENTROIDS[:3]
    ids = assign_stable_ids([0, 5, 2], old, CENTROIDS[[2, 0, 3, 1]])
    assert ids == [2, 0, 6, 5]
    # A far jump is a new behaviour when a distance limit is given.
    assert assign_stable_ids([0], np.zeros((1, 2)), np.array([[9.0, 9.0]]), max_distance=1.0) == [1]
    assert assign_stable_ids([], np.zeros((0, 2)), np.zeros((2, 2))) == [0, 1]


def test_labels_are_descriptive() -> None:
    labels = describe_behaviours(CENTROIDS, NAMES, POPULATION)
    assert labels == [
        "top value, very recent, very frequent",
        "no spend, lapsed, no purchases in window",
        "low value, recent, one-off",
        "high value, very recent, frequent, engaged (email_click)",
        "low value, lapsing, repeat",
    ]


def test_refunds_and_unused_engagement_read_sensibly() -> None:
    refunder = np.array(
        [[math.log1p(40), math.log1p(1), -math.log1p(60), -math.log1p(60)] + [0.0] * (D - 4)]
    )
    assert describe_behaviours(refunder, NAMES, POPULATION) == ["net refunds, recent, one-off"]
    # Nobody engages at all: no engagement phrase, and no crash on empty columns.
    assert (
        "engaged"
        not in describe_behaviours(CENTROIDS, NAMES, POPULATION * [1, 1, 1, 1, 0, 0, 0, 0, 0])[3]
    )


def test_labels_are_unique_even_for_look_alike_and_identical_centroids() -> None:
    twins = np.array([CENTROIDS[2], CENTROIDS[2] + 0.01, CENTROIDS[2], CENTROIDS[1]])
    labels = describe_behaviours(twins, NAMES, POPULATION)
    assert len(set(labels)) == len(labels)
    triplets = np.array([CENTROIDS[2], CENTROIDS[2] * 1.01, CENTROIDS[2] * 1.02])
    labels = describe_behaviours(triplets, NAMES, POPULATION)
    assert len(set(labels)) == 3
    assert all("rank" in label for label in labels)
    pair = describe_behaviours(np.array([CENTROIDS[2], CENTROIDS[2] * 1.01]), NAMES, POPULATION)
    assert {label.rsplit("(", 1)[1].split()[0] for label in pair} == {"lower", "higher"}
