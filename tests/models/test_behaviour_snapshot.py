from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from models.clustering import BehaviourClusterer
from models.snapshot import (
    FORMAT,
    Behaviour,
    BehaviourSnapshot,
    assign,
    drift_report,
    snapshot_from_model,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
Blobs = Callable[..., list[dict[str, float]]]


@pytest.fixture(scope="module")
def model(make_blobs: Blobs) -> BehaviourClusterer:
    m = BehaviourClusterer(n_clusters=4, warmup=100, reservoir_size=400, refresh_every=500, seed=2)
    for x in make_blobs(2000, seed=20):
        m.learn_one(x)
    return m


def make(
    version: int, behaviours: list[Behaviour], names: tuple[str, ...] = ("a", "b")
) -> BehaviourSnapshot:
    d = len(names)
    return BehaviourSnapshot(
        version=version,
        created_at=T0 + timedelta(days=version),
        feature_names=names,
        mean=(0.0,) * d,
        scale=(1.0,) * d,
        behaviours=tuple(behaviours),
    )


def seg(i: int, centroid: tuple[float, ...], share: float, spread: float = 1.0) -> Behaviour:
    return Behaviour(i, f"behaviour {i}", centroid, share, spread)


# -- snapshot ------------------------------------------------------------------------


def test_round_trip_is_exact_and_bytes_are_deterministic(model: BehaviourClusterer) -> None:
    snap = snapshot_from_model(model, created_at=T0)
    payload = snap.to_bytes()
    back = BehaviourSnapshot.from_bytes(payload)
    assert back == snap
    assert back.to_bytes() == payload
    assert snapshot_from_model(model, created_at=T0).to_bytes() == payload
    data = json.loads(payload)
    assert data["format"] == FORMAT and data["version"] == 1
    assert list(data) == sorted(data)


def test_created_at_is_normalized_to_utc_and_must_be_aware(model: BehaviourClusterer) -> None:
    paris = timezone(timedelta(hours=2))
    snap = snapshot_from_model(model, created_at=T0.astimezone(paris))
    assert json.loads(snap.to_bytes())["created_at"] == "2024-05-01T12:00:00+00:00"
    assert BehaviourSnapshot.from_bytes(snap.to_bytes()).created_at == T0
    with pytest.raises(ValueError, match="timezone"):
        snapshot_from_model(model, created_at=datetime(2024, 5, 1))


def test_invalid_snapshots_are_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        make(1, [seg(1, (0, 0), 0.5), seg(1, (1, 1), 0.5)])
    with pytest.raises(ValueError, match="length"):
        make(1, [seg(1, (0,), 1.0)])
    with pytest.raises(ValueError, match="format"):
        BehaviourSnapshot.from_dict({**make(1, [seg(0, (0, 0), 1)]).to_dict(), "format": "v0"})
    with pytest.raises(ValueError, match="warm-up"):
        snapshot_from_model(BehaviourClusterer(n_clusters=2, warmup=10), created_at=T0)


def test_assign_agrees_with_the_model_and_survives_serialization(
    model: BehaviourClusterer, make_blobs: Blobs
) -> None:
    snap = BehaviourSnapshot.from_bytes(snapshot_from_model(model, created_at=T0).to_bytes())
    ids = [s.behaviour_id for s in snap.behaviours]
    labels = [s.label for s in snap.behaviours]
    for x in make_blobs(500, seed=21):
        result = assign(snap, x)
        index = model.predict_one(x)
        assert result == (ids[index], labels[index])


def test_assign_ignores_unknown_features_and_zero_fills_missing_ones() -> None:
    snap = make(1, [seg(0, (0.0, 0.0), 0.5), seg(1, (3.0, 3.0), 0.5)])
    assert assign(snap, {"a": 2.9, "b": 3.1, "zzz": -100.0}).behaviour_id == 1
    assert assign(snap, {"a": 1.0}).behaviour_id == 0


def test_assign_is_cheap(model: BehaviourClusterer, make_blobs: Blobs) -> None:
    snap = snapshot_from_model(model, created_at=T0)
    xs = make_blobs(5000, seed=22)
    started = time.perf_counter()
    for x in xs:
        assign(snap, x)
    per_call = (time.perf_counter() - started) / len(xs)
    # About 3 us here (5 features, 4 behaviours); the bound only catches a gross regression.
    assert per_call < 100e-6


def test_versions_follow_and_ids_are_kept_when_model_indices_move(
    model: BehaviourClusterer,
) -> None:
    first = snapshot_from_model(model, created_at=T0)
    # Simulate a model whose clusters came out in another order (say, retrained elsewhere).
    shuffled = BehaviourClusterer(**model._get_params())
    shuffled.__dict__.update(
        {k: v for k, v in model.__dict__.items() if k not in {"_centroids", "_counts"}}
    )
    order = [2, 0, 3, 1]
    shuffled._centroids = [list(model._centroids[i]) for i in order]
    shuffled._counts = [model._counts[i] for i in order]
    shuffled._shares = [model._shares[i] for i in order]
    shuffled._spreads = [model._spreads[i] for i in order]
    second = snapshot_from_model(shuffled, created_at=T0 + timedelta(hours=1), previous=first)
    assert second.version == 2
    by_id = {s.behaviour_id: s for s in second.behaviours}
    for old in first.behaviours:
        assert by_id[old.behaviour_id].centroid == old.centroid
        assert by_id[old.behaviour_id].label == old.label
    assert snapshot_from_model(model, created_at=T0, previous=first, version=9).version == 9


def test_shares_can_be_supplied_and_are_normalized(model: BehaviourClusterer) -> None:
    snap = snapshot_from_model(model, created_at=T0, shares=[1, 1, 2, 4])
    assert [s.share for s in snap.behaviours] == [0.125, 0.125, 0.25, 0.5]
    assert sum(s.share for s in snapshot_from_model(model, created_at=T0).behaviours) == (
        pytest.approx(1.0)
    )


# -- drift ---------------------------------------------------------------------------


def flags(report: object) -> dict[int, tuple[str, ...]]:
    return {s.behaviour_id: s.flags for s in report.behaviours}  # type: ignore[attr-defined]


def test_no_drift_no_flags(model: BehaviourClusterer) -> None:
    snap = snapshot_from_model(model, created_at=T0)
    report = drift_report(snap, snap)
    assert report.flagged == ()
    assert report.max_centroid_shift == 0.0
    assert all(s.share_change == 0.0 for s in report.behaviours)


def test_size_change_and_centroid_movement() -> None:
    old = make(1, [seg(0, (0, 0), 0.5), seg(1, (5, 5), 0.5)])
    new = make(2, [seg(0, (0.3, 0.4), 0.3), seg(1, (5, 5), 0.7)])
    report = drift_report(old, new)
    assert report.behaviours[0].centroid_shift == pytest.approx(0.5)
    assert report.behaviours[0].share_change == pytest.approx(-0.2)
    assert report.behaviours[1].share_change == pytest.approx(0.2)
    assert flags(report) == {0: (), 1: ()}
    assert flags(drift_report(old, new, move_threshold=0.4))[0] == ("moved",)


def test_split_flag_needs_both_a_large_share_and_a_large_spread() -> None:
    base = [seg(1, (5, 0), 0.1, 0.5), seg(2, (0, 5), 0.1, 0.6), seg(3, (5, 5), 0.1, 0.4)]
    loose = make(2, [seg(0, (0, 0), 0.7, 3.0), *base])
    tight = make(2, [seg(0, (0, 0), 0.7, 0.5), *base])
    assert flags(drift_report(loose, loose))[0] == ("split",)
    assert flags(drift_report(tight, tight))[0] == ()


def test_merge_flag_for_close_centroids() -> None:
    snap = make(1, [seg(0, (0, 0), 0.3), seg(1, (0.2, 0.1), 0.3), seg(2, (6, 6), 0.4)])
    report = drift_report(snap, snap)
    assert flags(report) == {0: ("merge",), 1: ("merge",), 2: ()}
    assert report.behaviours[0].merge_with == (1,)
    assert [(a, b) for a, b, _ in report.close_pairs] == [(0, 1)]


def test_retire_new_and_gone() -> None:
    old = make(1, [seg(0, (0, 0), 0.5), seg(1, (5, 5), 0.5)])
    new = make(2, [seg(0, (0, 0), 0.995), seg(2, (9, 0), 0.005)])
    report = drift_report(old, new)
    assert flags(report) == {0: (), 2: ("new", "retire"), 1: ("gone",)}
    gone = report.behaviours[-1]
    assert gone.share is None and gone.share_change == -0.5
    assert report.previous_version == 1 and report.version == 2


def test_drift_is_measured_in_the_new_snapshot_standard_units() -> None:
    old = make(1, [seg(0, (0, 0), 1.0)])
    new = BehaviourSnapshot(
        version=2,
        created_at=T0,
        feature_names=("a", "b"),
        mean=(0.0, 0.0),
        scale=(2.0, 10.0),
        behaviours=(seg(0, (2.0, 10.0), 1.0),),
    )
    assert drift_report(old, new).behaviours[0].centroid_shift == pytest.approx(np.sqrt(2))
