"""River-style contract checks for the online behaviour clusterer.

The same checks run over every configuration in ``ESTIMATORS`` (river's own
``check_estimator`` yields no data-driven checks for clusterers, so they are spelled out
here, reusing river's check functions where they exist).
"""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest
from river import checks
from river.checks import common

from models.clustering import BehaviourClusterer

ESTIMATORS = {
    "default": lambda: BehaviourClusterer(n_clusters=4, seed=7),
    "small": lambda: BehaviourClusterer(
        n_clusters=4, warmup=20, reservoir_size=60, refresh_every=50, seed=7
    ),
    "short-memory": lambda: BehaviourClusterer(
        n_clusters=3, warmup=30, reservoir_size=100, refresh_every=40, memory=200, seed=3
    ),
    "no-refresh": lambda: BehaviourClusterer(n_clusters=4, warmup=50, refresh_every=0, seed=1),
}

Blobs = Callable[..., list[dict[str, float]]]


@pytest.fixture(params=list(ESTIMATORS))
def new_model(request: pytest.FixtureRequest) -> Callable[[], BehaviourClusterer]:
    return ESTIMATORS[request.param]


def pairs(xs: list[dict[str, float]]) -> list[tuple[dict[str, float], None]]:
    return [(x, None) for x in xs]


def learned(model: BehaviourClusterer, xs: list[dict[str, float]]) -> BehaviourClusterer:
    for x in xs:
        model.learn_one(x)
    return model


def test_river_generic_checks(new_model: Callable[[], BehaviourClusterer]) -> None:
    pytest.importorskip("sklearn", reason="river.checks imports scikit-learn datasets")
    checks.check_estimator(new_model())


@pytest.mark.parametrize(
    "check",
    [
        common.check_learn_one,
        common.check_predict_one_pure,
        common.check_shuffle_features_no_impact,
        common.check_emerging_features,
        common.check_disappearing_features,
        common.check_radically_disappearing_features,
        common.check_pickling,
    ],
    ids=lambda check: check.__name__,
)
def test_river_data_checks(
    new_model: Callable[[], BehaviourClusterer], stream: list[dict[str, float]], check: Callable
) -> None:
    check(new_model(), pairs(stream))


def test_predict_one_does_not_mutate_input(
    new_model: Callable[[], BehaviourClusterer], stream: list[dict[str, float]]
) -> None:
    model = learned(new_model(), stream)
    for x in stream[:50]:
        before = copy.deepcopy(x)
        model.predict_one(x)
        assert x == before
        assert list(x) == list(before)


def test_learn_one_keeps_no_reference_to_its_input(stream: list[dict[str, float]]) -> None:
    model = BehaviourClusterer(n_clusters=4, warmup=20, reservoir_size=60, refresh_every=50, seed=0)
    xs = copy.deepcopy(stream)
    learned(model, xs)
    predictions = [model.predict_one(x) for x in stream]
    for x in xs:
        for key in x:
            x[key] = 1e9
    assert [model.predict_one(x) for x in stream] == predictions


def test_pickle_round_trip_gives_identical_predictions_and_learning(
    new_model: Callable[[], BehaviourClusterer], make_blobs: Blobs
) -> None:
    model = learned(new_model(), make_blobs(700, seed=1))
    clone = pickle.loads(pickle.dumps(model))
    probe = make_blobs(300, seed=2)
    assert [clone.predict_one(x) for x in probe] == [model.predict_one(x) for x in probe]
    # The random generator is part of the state: both go on learning identically.
    more = make_blobs(600, seed=3)
    learned(model, more)
    learned(clone, more)
    assert [clone.predict_one(x) for x in probe] == [model.predict_one(x) for x in probe]
    np.testing.assert_array_equal(clone.centroids, model.centroids)


def test_same_seed_same_stream_same_predictions(
    new_model: Callable[[], BehaviourClusterer], make_blobs: Blobs
) -> None:
    xs = make_blobs(1500, seed=4)
    a, b = learned(new_model(), xs), learned(new_model(), xs)
    probe = make_blobs(400, seed=5)
    assert [a.predict_one(x) for x in probe] == [b.predict_one(x) for x in probe]
    np.testing.assert_array_equal(a.centroids, b.centroids)


def test_clone_starts_afresh_with_the_same_parameters(make_blobs: Blobs) -> None:
    model = learned(BehaviourClusterer(n_clusters=4, warmup=40, seed=9), make_blobs(500))
    fresh = model.clone()
    assert fresh.n_seen == 0 and not fresh.ready
    assert fresh._get_params() == model._get_params()
    learned(fresh, make_blobs(500))
    np.testing.assert_array_equal(fresh.centroids, model.centroids)


def test_memory_is_bounded_over_100k_points(make_blobs: Blobs) -> None:
    model = BehaviourClusterer(n_clusters=4, warmup=200, reservoir_size=1000, refresh_every=10_000)
    xs = make_blobs(20_000, seed=6)
    sizes = []
    for _ in range(5):
        learned(model, xs)
        sizes.append(len(pickle.dumps(model)))
    assert model.n_seen == 100_000
    # Reservoir (1000 x 5 float64 = 40 kB) plus O(k * d) state; nothing per point.
    assert max(sizes) < 60_000, sizes
    # No growth after the first 20k points beyond the block of pre-drawn random numbers
    # (at most 1024 floats) that the reservoir consumes.
    assert max(sizes) - sizes[0] < 12_000, sizes


def test_river_bounded_memory_check(make_blobs: Blobs) -> None:
    model = BehaviourClusterer(n_clusters=4, warmup=100, reservoir_size=500, refresh_every=2000)
    common.check_bounded_memory_growth(model, pairs(make_blobs(20_000, seed=8)))


def one_to_one(truth: list[int], predicted: list[int]) -> bool:
    pairs = set(zip(truth, predicted, strict=True))
    return len(pairs) == len(set(truth)) == len(set(predicted))


def test_predicts_zero_until_warm_up_then_finds_the_blobs(make_labelled_blobs: Callable) -> None:
    model = BehaviourClusterer(n_clusters=4, warmup=100, seed=0)
    xs, _ = make_labelled_blobs(2000, seed=10)
    for x in xs[:99]:
        model.learn_one(x)
        assert model.predict_one(x) == 0
    assert not model.ready
    learned(model, xs[99:])
    assert model.ready
    probe, truth = make_labelled_blobs(400, seed=11)
    assert one_to_one(truth, [model.predict_one(x) for x in probe])


def test_cluster_indices_survive_refreshes_and_reseeds(make_labelled_blobs: Callable) -> None:
    """A cluster index keeps meaning the same blob while the model refreshes itself."""
    model = BehaviourClusterer(n_clusters=4, warmup=100, reservoir_size=300, refresh_every=100)
    probe, truth = make_labelled_blobs(400, seed=12)
    xs, _ = make_labelled_blobs(3000, seed=13)
    learned(model, xs[:100])
    first = [model.predict_one(x) for x in probe]
    assert one_to_one(truth, first)
    for start in range(100, 3000, 100):
        learned(model, xs[start : start + 100])
        assert [model.predict_one(x) for x in probe] == first


def test_forced_reseed_is_matched_back_to_the_old_indices(make_labelled_blobs: Callable) -> None:
    model = BehaviourClusterer(
        n_clusters=4, warmup=200, reservoir_size=400, refresh_every=0, seed=5
    )
    xs, _ = make_labelled_blobs(1000, seed=14)
    learned(model, xs)
    probe, _ = make_labelled_blobs(300, seed=15)
    before = [model.predict_one(x) for x in probe]
    # Scramble the centroid order and spoil them, as a bad local optimum would: the refresh
    # re-seeds (much lower inertia) and must hand each blob back its previous index.
    model._centroids = [[v + 0.8 for v in c] for c in model._centroids]
    model._refresh()
    assert [model.predict_one(x) for x in probe] == before


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        BehaviourClusterer(n_clusters=0)
    with pytest.raises(ValueError):
        BehaviourClusterer(n_clusters=5, warmup=3)
    with pytest.raises(ValueError):
        BehaviourClusterer(warmup=100, reservoir_size=50)
    with pytest.raises(ValueError):
        BehaviourClusterer(memory=0)


def test_learning_does_not_depend_on_string_hashing() -> None:
    """Learner restarts and replays must agree across processes (river's KMeans does not:
    it draws initial centres in set order of the feature names, see docs/behaviours.md)."""
    code = (
        "import numpy as np\n"
        "from models.clustering import BehaviourClusterer\n"
        "rng = np.random.default_rng(0)\n"
        "names = ['recency', 'frequency', 'monetary', 'email_open', 'page_view']\n"
        "m = BehaviourClusterer(3, warmup=50, reservoir_size=200, refresh_every=100, seed=4)\n"
        "for row in rng.normal(size=(600, 5)) + rng.integers(3, size=(600, 1)) * 4:\n"
        "    m.learn_one({n: float(v) for n, v in zip(names, row)})\n"
        "print(m.centroids.tolist())\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": str(hash_seed)},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        for hash_seed in (1, 2, 3)
    }
    assert len(outputs) == 1
