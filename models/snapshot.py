"""Versioned, serializable behaviour model snapshots, cheap assignment, and drift reports.

Workers never share a live estimator. One place learns (see :class:`~models.clustering.
BehaviourClusterer`), freezes it with :func:`snapshot_from_model` into a
:class:`BehaviourSnapshot` (version, centroids, scaler statistics, stable behaviour ids and
labels), publishes :meth:`BehaviourSnapshot.to_bytes`, and every worker assigns customers
with :func:`assign` against the same version. Equal snapshots serialize to equal bytes,
so the version's content can be checked by hash.

:func:`drift_report` compares two snapshots so that an operator (or an alert) can see
what a model update changed before customers start moving between behaviours.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from statistics import median
from typing import Any, NamedTuple

import numpy as np

from models.clustering import BehaviourClusterer
from models.naming import assign_stable_ids, describe_behaviours

__all__ = [
    "FORMAT",
    "Assignment",
    "DriftReport",
    "Behaviour",
    "BehaviourDrift",
    "BehaviourSnapshot",
    "assign",
    "drift_report",
    "snapshot_from_model",
]

FORMAT = "tierstream.segments/1"


@dataclass(frozen=True, slots=True)
class Behaviour:
    """One behaviour of a snapshot.

    ``centroid`` is in feature units (the log-compressed features), ``share`` the fraction
    of customers (or of recent learning points) assigned to it, ``spread`` the mean squared
    standardized distance of its members to the centroid.
    """

    behaviour_id: int
    label: str
    centroid: tuple[float, ...]
    share: float
    spread: float


class Assignment(NamedTuple):
    behaviour_id: int
    label: str


@dataclass(frozen=True)
class BehaviourSnapshot:
    """An immutable, versioned copy of a behaviour model.

    Parameters
    ----------
    version
        Increases by one with every published model; workers tag their output with it.
    created_at
        Timezone-aware creation time (normalized to UTC when serialized).
    feature_names
        Column order of ``mean``, ``scale`` and every centroid.
    mean, scale
        Standardization applied before distances are taken.
    behaviours
        The behaviours; ids and labels are unique.
    n_seen
        Points the model had learned when frozen.
    """

    version: int
    created_at: datetime
    feature_names: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    behaviours: tuple[Behaviour, ...]
    n_seen: int = 0
    format: str = field(default=FORMAT)

    def __post_init__(self) -> None:
        if self.format != FORMAT:
            raise ValueError(f"unsupported snapshot format {self.format!r}, expected {FORMAT!r}")
        if self.created_at.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
        if self.version < 0:
            raise ValueError("version must be >= 0")
        d = len(self.feature_names)
        if len(self.mean) != d or len(self.scale) != d:
            raise ValueError("mean and scale need one value per feature")
        if any(not s > 0 or not math.isfinite(s) for s in self.scale):
            raise ValueError("scale values must be finite and > 0")
        if not self.behaviours:
            raise ValueError("a snapshot needs at least one behaviour")
        for behaviour in self.behaviours:
            if len(behaviour.centroid) != d:
                raise ValueError(f"behaviour {behaviour.behaviour_id}: centroid has wrong length")
        if len({s.behaviour_id for s in self.behaviours}) != len(self.behaviours):
            raise ValueError("behaviour ids must be unique")
        if len({s.label for s in self.behaviours}) != len(self.behaviours):
            raise ValueError("behaviour labels must be unique")

    @property
    def k(self) -> int:
        return len(self.behaviours)

    def behaviour(self, behaviour_id: int) -> Behaviour:
        for behaviour in self.behaviours:
            if behaviour.behaviour_id == behaviour_id:
                return behaviour
        raise KeyError(behaviour_id)

    def standardized_centroids(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """``(k, n_features)`` centroids in this snapshot's standardized units."""
        centroids = np.array([s.centroid for s in self.behaviours], dtype=np.float64)
        standardized: np.ndarray[Any, np.dtype[np.float64]] = (
            centroids - np.array(self.mean)
        ) / np.array(self.scale)
        return standardized

    # -- serialization -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "version": self.version,
            "created_at": self.created_at.astimezone(UTC).isoformat(),
            "n_seen": self.n_seen,
            "feature_names": list(self.feature_names),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "segments": [
                {
                    "segment_id": s.behaviour_id,
                    "label": s.label,
                    "centroid": list(s.centroid),
                    "share": s.share,
                    "spread": s.spread,
                }
                for s in self.behaviours
            ],
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON: sorted keys, no whitespace, floats as their shortest repr."""
        return json.dumps(
            self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False
        ).encode("utf-8")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BehaviourSnapshot:
        return cls(
            format=str(data["format"]),
            version=int(data["version"]),
            created_at=datetime.fromisoformat(str(data["created_at"])),
            n_seen=int(data["n_seen"]),
            feature_names=tuple(str(n) for n in data["feature_names"]),
            mean=tuple(float(v) for v in data["mean"]),
            scale=tuple(float(v) for v in data["scale"]),
            behaviours=tuple(
                Behaviour(
                    behaviour_id=int(s["segment_id"]),
                    label=str(s["label"]),
                    centroid=tuple(float(v) for v in s["centroid"]),
                    share=float(s["share"]),
                    spread=float(s["spread"]),
                )
                for s in data["segments"]
            ),
        )

    @classmethod
    def from_bytes(cls, payload: bytes) -> BehaviourSnapshot:
        data = json.loads(payload.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("a snapshot is a JSON object")
        return cls.from_dict(data)

    # -- assignment ----------------------------------------------------------------

    @cached_property
    def _assigner(self) -> _Assigner:
        return _Assigner(self)


class _Assigner:
    """Plain-Python copies of the arrays :func:`assign` needs, built once per snapshot.

    With a dozen features and a handful of behaviours, list arithmetic beats numpy, whose
    per-call overhead is larger than the whole computation.
    """

    __slots__ = ("names", "mean", "inv_scale", "centroids", "results")

    def __init__(self, snapshot: BehaviourSnapshot) -> None:
        self.names = snapshot.feature_names
        self.mean = snapshot.mean
        self.inv_scale = tuple(1.0 / s for s in snapshot.scale)
        self.centroids = tuple(
            tuple(v for v in row) for row in snapshot.standardized_centroids().tolist()
        )
        self.results = tuple(Assignment(s.behaviour_id, s.label) for s in snapshot.behaviours)

    def __call__(self, features: Mapping[str, float]) -> Assignment:
        z = [
            (features.get(name, 0.0) - m) * s
            for name, m, s in zip(self.names, self.mean, self.inv_scale, strict=True)
        ]
        best, best_distance = 0, math.inf
        for index, centroid in enumerate(self.centroids):
            distance = 0.0
            for value, center in zip(z, centroid, strict=True):
                diff = value - center
                distance += diff * diff
            if distance < best_distance:
                best, best_distance = index, distance
        return self.results[best]


def assign(snapshot: BehaviourSnapshot, features: Mapping[str, float]) -> Assignment:
    """The behaviour of one customer's feature dict (see :func:`models.features.build_features`).

    Nearest standardized centroid; features the snapshot does not know are ignored and
    features it knows but ``features`` lacks count as 0. Ties go to the earlier behaviour,
    so every worker gets the same answer for the same snapshot.

    Examples
    --------
    >>> snap = BehaviourSnapshot(
    ...     version=3,
    ...     created_at=datetime(2024, 1, 1, tzinfo=UTC),
    ...     feature_names=("a", "b"),
    ...     mean=(0.0, 0.0),
    ...     scale=(1.0, 10.0),
    ...     behaviours=(
    ...         Behaviour(4, "low", (0.0, 0.0), 0.5, 1.0),
    ...         Behaviour(9, "high", (5.0, 50.0), 0.5, 1.0),
    ...     ),
    ... )
    >>> assign(snap, {"a": 4.0, "b": 20.0})
    Assignment(behaviour_id=9, label='high')
    >>> BehaviourSnapshot.from_bytes(snap.to_bytes()) == snap
    True
    """
    return snapshot._assigner(features)


def snapshot_from_model(
    model: BehaviourClusterer,
    *,
    created_at: datetime,
    previous: BehaviourSnapshot | None = None,
    version: int | None = None,
    shares: Sequence[float] | None = None,
    max_id_distance: float | None = None,
) -> BehaviourSnapshot:
    """Freeze ``model`` into a snapshot whose behaviour ids continue ``previous``'s.

    Parameters
    ----------
    model
        A model past its warm-up (:attr:`BehaviourClusterer.ready`).
    created_at
        Timezone-aware time of the snapshot (inject the clock).
    previous
        The snapshot currently published. Its ids are carried over to the nearest new
        centroids (Hungarian matching in the new model's standardized units), so a
        behaviour keeps its id however the model's cluster indices moved. Without it ids
        are ``0..k-1``.
    version
        Defaults to ``previous.version + 1``, or 1.
    shares
        Share of customers per model cluster when the caller counted them (for example
        from stored customer state); defaults to the model's recent learning shares.
    max_id_distance
        A new centroid further than this from its match (standardized Euclidean) gets a
        fresh id instead: it is a new behaviour, not the old one moved.
    """
    if not model.ready:
        raise ValueError("the model has not finished its warm-up")
    names = model.feature_names
    mean, scale = model.mean, model.scale
    centroids = model.centroids
    standardized = (centroids - mean) / scale

    if previous is not None and previous.feature_names == names:
        old = np.array([s.centroid for s in previous.behaviours], dtype=np.float64)
        ids = assign_stable_ids(
            [s.behaviour_id for s in previous.behaviours],
            (old - mean) / scale,
            standardized,
            max_distance=max_id_distance,
        )
    elif previous is not None:
        # Different features: nothing can be matched, but ids must still not be reused.
        start = max(s.behaviour_id for s in previous.behaviours) + 1
        ids = list(range(start, start + len(centroids)))
    else:
        ids = list(range(len(centroids)))

    labels = describe_behaviours(centroids, names, model.reservoir)
    share_values = list(shares) if shares is not None else model.shares.tolist()
    if len(share_values) != len(centroids):
        raise ValueError("shares needs one value per cluster")
    total = sum(share_values)
    if total > 0:
        share_values = [s / total for s in share_values]
    spreads = model.spreads.tolist()

    return BehaviourSnapshot(
        version=version if version is not None else (previous.version + 1 if previous else 1),
        created_at=created_at,
        feature_names=names,
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        n_seen=model.n_seen,
        behaviours=tuple(
            Behaviour(
                behaviour_id=ids[i],
                label=labels[i],
                centroid=tuple(float(v) for v in centroids[i]),
                share=float(share_values[i]),
                spread=float(spreads[i]),
            )
            for i in range(len(centroids))
        ),
    )


# -- drift -------------------------------------------------------------------------

NEW = "new"
GONE = "gone"
MOVED = "moved"
SPLIT = "split"
MERGE = "merge"
RETIRE = "retire"


@dataclass(frozen=True, slots=True)
class BehaviourDrift:
    """How one behaviour changed between two snapshots.

    ``previous_share``/``share`` are ``None`` where the behaviour is absent from that
    snapshot; ``centroid_shift`` is in the new snapshot's standardized units (``None``
    unless the behaviour is in both).
    """

    behaviour_id: int
    label: str
    previous_share: float | None
    share: float | None
    centroid_shift: float | None
    flags: tuple[str, ...]
    merge_with: tuple[int, ...] = ()

    @property
    def share_change(self) -> float:
        return (self.share or 0.0) - (self.previous_share or 0.0)


@dataclass(frozen=True, slots=True)
class DriftReport:
    previous_version: int
    version: int
    behaviours: tuple[BehaviourDrift, ...]
    # (id, id, distance) of new-snapshot centroid pairs closer than the merge threshold.
    close_pairs: tuple[tuple[int, int, float], ...]

    @property
    def flagged(self) -> tuple[BehaviourDrift, ...]:
        return tuple(s for s in self.behaviours if s.flags)

    @property
    def max_centroid_shift(self) -> float:
        return max((s.centroid_shift or 0.0 for s in self.behaviours), default=0.0)


def drift_report(
    previous: BehaviourSnapshot,
    current: BehaviourSnapshot,
    *,
    move_threshold: float = 0.5,
    split_share_factor: float = 2.0,
    split_spread_factor: float = 1.5,
    merge_distance: float = 0.75,
    retire_share: float = 0.01,
) -> DriftReport:
    """Compare two snapshots behaviour by behaviour (behaviours are matched by id).

    Flags
    -----
    ``new`` / ``gone``
        The id exists only in ``current`` / only in ``previous``.
    ``moved``
        The centroid moved more than ``move_threshold`` standardized units.
    ``split``
        The behaviour holds at least ``split_share_factor`` times the median share of the
        others *and* its spread is at least ``split_spread_factor`` times their median
        spread: a big, loose group that more clusters would likely cut in two.
    ``merge``
        Its centroid is closer than ``merge_distance`` (standardized Euclidean) to
        another one: the two behaviours hardly differ.
    ``retire``
        Its share fell below ``retire_share``.

    Examples
    --------
    >>> def snap(version, behaviours):
    ...     return BehaviourSnapshot(version, datetime(2024, 1, version, tzinfo=UTC), ("a",),
    ...                              (0.0,), (1.0,), tuple(behaviours))
    >>> B = Behaviour
    >>> old = snap(1, [B(0, "x", (0.0,), 0.6, 1.0), B(1, "y", (3.0,), 0.4, 1.0)])
    >>> new = snap(2, [B(0, "x", (0.1,), 0.995, 1.0), B(1, "y", (3.0,), 0.005, 1.0)])
    >>> [(s.behaviour_id, s.flags) for s in drift_report(old, new).behaviours]
    [(0, ()), (1, ('retire',))]
    """
    scale = np.array(current.scale, dtype=np.float64)
    before = {s.behaviour_id: s for s in previous.behaviours}
    after = {s.behaviour_id: s for s in current.behaviours}

    close: list[tuple[int, int, float]] = []
    now = list(current.behaviours)
    for i, a in enumerate(now):
        for b in now[i + 1 :]:
            distance = float(np.linalg.norm((np.array(a.centroid) - np.array(b.centroid)) / scale))
            if distance < merge_distance:
                close.append((a.behaviour_id, b.behaviour_id, distance))

    report: list[BehaviourDrift] = []
    for behaviour in current.behaviours:
        flags: list[str] = []
        old = before.get(behaviour.behaviour_id)
        shift: float | None = None
        if old is None:
            flags.append(NEW)
        else:
            shift = float(
                np.linalg.norm((np.array(behaviour.centroid) - np.array(old.centroid)) / scale)
            )
            if shift > move_threshold:
                flags.append(MOVED)
        others = [s for s in current.behaviours if s.behaviour_id != behaviour.behaviour_id]
        if others:
            other_share = median(s.share for s in others)
            other_spread = median(s.spread for s in others)
            if (
                behaviour.share >= split_share_factor * other_share
                and behaviour.spread >= split_spread_factor * other_spread
            ):
                flags.append(SPLIT)
        partners = tuple(
            b if a == behaviour.behaviour_id else a
            for a, b, _ in close
            if behaviour.behaviour_id in (a, b)
        )
        if partners:
            flags.append(MERGE)
        if behaviour.share < retire_share:
            flags.append(RETIRE)
        report.append(
            BehaviourDrift(
                behaviour_id=behaviour.behaviour_id,
                label=behaviour.label,
                previous_share=old.share if old else None,
                share=behaviour.share,
                centroid_shift=shift,
                flags=tuple(flags),
                merge_with=partners,
            )
        )
    for behaviour in previous.behaviours:
        if behaviour.behaviour_id not in after:
            report.append(
                BehaviourDrift(
                    behaviour_id=behaviour.behaviour_id,
                    label=behaviour.label,
                    previous_share=behaviour.share,
                    share=None,
                    centroid_shift=None,
                    flags=(GONE,),
                )
            )
    return DriftReport(
        previous_version=previous.version,
        version=current.version,
        behaviours=tuple(report),
        close_pairs=tuple(close),
    )
