"""Learned behaviour statistics: exact add/remove, merging, scaling, seeding, Lloyd steps."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from models.learning import (
    UNIT,
    Contribution,
    PopulationStats,
    add_contribution,
    chosen_seeds,
    in_feature_order,
    merged_snapshot,
    seed_snapshot,
    to_units,
)

NAMES = ("a", "b")
NOW = datetime(2024, 1, 1, tzinfo=UTC)


def tallies_of(rows: list[tuple[int | None, tuple[float, ...]]]) -> dict[str, int]:
    tallies: dict[str, int] = {}
    for behaviour, vector in rows:
        add_contribution(tallies, Contribution(behaviour, to_units(vector)), 1)
    return tallies


def test_removing_a_contribution_restores_the_statistics_exactly():
    tallies = tallies_of([(0, (1.25, -3.5)), (1, (0.1, 0.2))])
    before = dict(tallies)
    odd = Contribution(0, to_units((2.0 / 3.0, 1e-7)))
    add_contribution(tallies, odd, 1)
    add_contribution(tallies, odd, -1)
    assert tallies == before


def test_statistics_are_the_same_in_any_order_and_split_over_shards():
    rng = np.random.default_rng(1)
    rows = [(int(rng.integers(3)), tuple(rng.normal(size=2))) for _ in range(200)]
    whole = tallies_of(rows)
    shards = [tallies_of(rows[i::3]) for i in range(3)]
    merged: dict[str, int] = {}
    for shard in shards:
        for name, value in shard.items():
            merged[name] = merged.get(name, 0) + value
    assert {k: v for k, v in merged.items() if v} == {k: v for k, v in whole.items() if v}
    assert tallies_of(list(reversed(rows))) == whole


def test_scaling_is_the_population_mean_and_standard_deviation():
    rng = np.random.default_rng(2)
    x = rng.normal([5.0, -1.0], [2.0, 0.5], size=(500, 2))
    rows = [(i % 3 if i % 4 else None, tuple(v)) for i, v in enumerate(x)]
    population = PopulationStats.from_tallies(tallies_of(rows), 2)
    mean, scale = population.scaling()
    assert population.customers == 500
    np.testing.assert_allclose(mean, x.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(scale, x.std(axis=0), atol=1e-4)


def test_seed_waits_for_enough_customers_and_is_deterministic():
    rng = np.random.default_rng(3)
    tallies: dict[str, int] = {}
    points = np.vstack([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))])
    for i, point in enumerate(points):
        tallies[f"learn:seed:0:{i}:n"] = 1
        for j, value in enumerate(to_units(tuple(point))):
            tallies[f"learn:seed:0:{i}:{j}"] = value
        add_contribution(tallies, Contribution(None, to_units(tuple(point))), 1)
    population = PopulationStats.from_tallies(tallies, 2)
    assert seed_snapshot(population, NAMES, 2, 41, NOW) is None
    first = seed_snapshot(population, NAMES, 2, 40, NOW)
    again = seed_snapshot(PopulationStats.from_tallies(tallies, 2), NAMES, 2, 40, NOW)
    assert first is not None and again is not None
    assert first.to_bytes() == again.to_bytes()
    assert first.version == 1
    centres = sorted(round(s.centroid[0]) for s in first.behaviours)
    assert centres == [0, 5]


def test_a_merge_moves_each_centroid_to_the_mean_of_its_members_and_keeps_ids():
    rng = np.random.default_rng(4)
    tallies: dict[str, int] = {}
    for i, point in enumerate(np.vstack([rng.normal(0, 1, (50, 2)), rng.normal(8, 1, (50, 2))])):
        add_contribution(tallies, Contribution(None, to_units(tuple(point))), 1)
        if i == 0:
            tallies["learn:seed:0:0:n"] = 1
            for j, value in enumerate(to_units(tuple(point))):
                tallies[f"learn:seed:0:0:{j}"] = value
    population = PopulationStats.from_tallies(tallies, 2)
    seed = seed_snapshot(population, NAMES, 1, 1, NOW)
    assert seed is not None
    # Members now assigned to behaviour 0 (the only one): its centroid becomes their mean.
    members: dict[str, int] = {}
    for name, value in tallies.items():
        members[name.replace(":-", ":0")] = value
    merge = merged_snapshot(PopulationStats.from_tallies(members, 2), seed, NOW)
    assert merge.snapshot.version == 2
    assert [s.behaviour_id for s in merge.snapshot.behaviours] == [0]
    expected = np.array([members["learn:s:0:0"], members["learn:s:0:1"]]) / UNIT / 100
    np.testing.assert_allclose(merge.snapshot.behaviours[0].centroid, expected)
    assert merge.shift > 0


def test_a_batch_learned_snapshot_is_reordered_to_the_statistics_columns():
    population = PopulationStats.from_tallies(
        {
            **tallies_of([(None, (1.0, 2.0)), (None, (3.0, 5.0))]),
            "learn:seed:0:0:0": UNIT,
            "learn:seed:0:0:n": 1,
        },
        2,
    )
    seed = seed_snapshot(population, ("b", "a"), 1, 1, NOW)
    assert seed is not None
    flipped = in_feature_order(seed, ("a", "b"))
    assert flipped.feature_names == ("a", "b")
    assert flipped.behaviours[0].centroid == tuple(reversed(seed.behaviours[0].centroid))
    with pytest.raises(ValueError, match="other features"):
        in_feature_order(seed, ("a", "c"))


def test_the_seeds_chosen_are_each_shards_first_whatever_arrived_first():
    # Three shards, 7 seeds wanted: 3 from each (ranks 0..2), then (rank, shard) order.
    assert chosen_seeds({(0, i): 0 for i in range(9)} | {(1, 0): 0, (1, 1): 0}, 7, 3) is None
    late = {(s, i): 0 for s in range(3) for i in range(3)}
    early = late | {(0, i): 0 for i in range(3, 9)}  # shard 0 ran ahead: the same choice
    chosen = [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2)]
    assert chosen_seeds(late, 7, 3) == chosen_seeds(early, 7, 3) == chosen
    # An erased seed (no longer standing) is replaced by the shard's next one.
    erased = {k: 0 for k in early if k != (0, 1)}
    assert chosen_seeds(erased, 7, 3) == [(0, 0), (1, 0), (2, 0), (0, 2), (1, 1), (2, 1), (0, 3)]
    # An idle shard holds nothing up once twice as many seeds stand elsewhere.
    idle = {(s, i): 0 for s in range(2) for i in range(7)}
    assert chosen_seeds(idle, 7, 3) == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2), (0, 3)]


def test_a_seed_taken_out_is_no_longer_a_seed():
    tallies = {"learn:seed:1:4:n": 1, "learn:seed:1:4:0": 5, "learn:seed:2:0:n": 0}
    tallies |= {"learn:seed:2:0:0": 0, "learn:seed:2:0:1": 0}
    assert PopulationStats.from_tallies(tallies, 2).seeds == {(1, 4): [5, 0]}
