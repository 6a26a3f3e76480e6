"""Versioned, serializable segment model snapshots, cheap assignment, and drift reports.

Workers never share a live estimator. One place learns (see :class:`~models.clustering.
OnlineSegmenter`), freezes it with :func:`snapshot_from_model` into a
:class:`SegmentSnapshot` (version, centroids, scaler statistics, stable segment ids and
labels), publishes :meth:`SegmentSnapshot.to_bytes`, and every worker assigns customers
with :func:`assign` against the same version. Equal snapshots serialize to equal bytes,
so the version's content can be checked by hash.

:func:`drift_report` compares two snapshots so that an operator (or an alert) can see
what a model update changed before customers start moving between segments.
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

from models.clustering import OnlineSegmenter
from models.naming import assign_stable_ids, describe_segments

__all__ = [
    "FORMAT",
    "Assignment",
    "DriftReport",
    "Segment",
    "SegmentDrift",
    "SegmentSnapshot",
    "assign",
    "drift_report",
    "snapshot_from_model",
]

FORMAT = "tierstream.segments/1"


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment of a snapshot.

    ``centroid`` is in feature units (the log-compressed features), ``share`` the fraction
    of customers (or of recent learning points) assigned to it, ``spread`` the mean squared
    standardized distance of its members to the centroid.
    """

    segment_id: int
    label: str
    centroid: tuple[float, ...]
    share: float
    spread: float


class Assignment(NamedTuple):
    segment_id: int
    label: str


@dataclass(frozen=True)
class SegmentSnapshot:
    """An immutable, versioned copy of a segmentation model.

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
    segments
        The segments; ids and labels are unique.
    n_seen
        Points the model had learned when frozen.
    """

    version: int
    created_at: datetime
    feature_names: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    segments: tuple[Segment, ...]
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
        if not self.segments:
            raise ValueError("a snapshot needs at least one segment")
        for segment in self.segments:
            if len(segment.centroid) != d:
                raise ValueError(f"segment {segment.segment_id}: centroid has wrong length")
        if len({s.segment_id for s in self.segments}) != len(self.segments):
            raise ValueError("segment ids must be unique")
        if len({s.label for s in self.segments}) != len(self.segments):
            raise ValueError("segment labels must be unique")

    @property
    def k(self) -> int:
        return len(self.segments)

    def segment(self, segment_id: int) -> Segment:
        for segment in self.segments:
            if segment.segment_id == segment_id:
                return segment
        raise KeyError(segment_id)

    def standardized_centroids(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """``(k, n_features)`` centroids in this snapshot's standardized units."""
        centroids = np.array([s.centroid for s in self.segments], dtype=np.float64)
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
                    "segment_id": s.segment_id,
                    "label": s.label,
                    "centroid": list(s.centroid),
                    "share": s.share,
                    "spread": s.spread,
                }
                for s in self.segments
            ],
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON: sorted keys, no whitespace, floats as their shortest repr."""
        return json.dumps(
            self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False
        ).encode("utf-8")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentSnapshot:
        return cls(
            format=str(data["format"]),
            version=int(data["version"]),
            created_at=datetime.fromisoformat(str(data["created_at"])),
            n_seen=int(data["n_seen"]),
            feature_names=tuple(str(n) for n in data["feature_names"]),
            mean=tuple(float(v) for v in data["mean"]),
            scale=tuple(float(v) for v in data["scale"]),
            segments=tuple(
                Segment(
                    segment_id=int(s["segment_id"]),
                    label=str(s["label"]),
                    centroid=tuple(float(v) for v in s["centroid"]),
                    share=float(s["share"]),
                    spread=float(s["spread"]),
                )
                for s in data["segments"]
            ),
        )

    @classmethod
    def from_bytes(cls, payload: bytes) -> SegmentSnapshot:
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

    With a dozen features and a handful of segments, list arithmetic beats numpy, whose
    per-call overhead is larger than the whole computation.
    """

    __slots__ = ("names", "mean", "inv_scale", "centroids", "results")

    def __init__(self, snapshot: SegmentSnapshot) -> None:
        self.names = snapshot.feature_names
        self.mean = snapshot.mean
        self.inv_scale = tuple(1.0 / s for s in snapshot.scale)
        self.centroids = tuple(
            tuple(v for v in row) for row in snapshot.standardized_centroids().tolist()
        )
        self.results = tuple(Assignment(s.segment_id, s.label) for s in snapshot.segments)

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


def assign(snapshot: SegmentSnapshot, features: Mapping[str, float]) -> Assignment:
    """The segment of one customer's feature dict (see :func:`models.features.build_features`).

    Nearest standardized centroid; features the snapshot does not know are ignored and
    features it knows but ``features`` lacks count as 0. Ties go to the earlier segment,
    so every worker gets the same answer for the same snapshot.

    Examples
    --------
    >>> snap = SegmentSnapshot(
    ...     version=3,
    ...     created_at=datetime(2024, 1, 1, tzinfo=UTC),
    ...     feature_names=("a", "b"),
    ...     mean=(0.0, 0.0),
    ...     scale=(1.0, 10.0),
    ...     segments=(
    ...         Segment(4, "low", (0.0, 0.0), 0.5, 1.0),
    ...         Segment(9, "high", (5.0, 50.0), 0.5, 1.0),
    ...     ),
    ... )
    >>> assign(snap, {"a": 4.0, "b": 20.0})
    Assignment(segment_id=9, label='high')
    >>> SegmentSnapshot.from_bytes(snap.to_bytes()) == snap
    True
    """
    return snapshot._assigner(features)


def snapshot_from_model(
    model: OnlineSegmenter,
    *,
    created_at: datetime,
    previous: SegmentSnapshot | None = None,
    version: int | None = None,
    shares: Sequence[float] | None = None,
    max_id_distance: float | None = None,
) -> SegmentSnapshot:
    """Freeze ``model`` into a snapshot whose segment ids continue ``previous``'s.

    Parameters
    ----------
    model
        A model past its warm-up (:attr:`OnlineSegmenter.ready`).
    created_at
        Timezone-aware time of the snapshot (inject the clock).
    previous
        The snapshot currently published. Its ids are carried over to the nearest new
        centroids (Hungarian matching in the new model's standardized units), so a
        segment keeps its id however the model's cluster indices moved. Without it ids
        are ``0..k-1``.
    version
        Defaults to ``previous.version + 1``, or 1.
    shares
        Share of customers per model cluster when the caller counted them (for example
        from stored customer state); defaults to the model's recent learning shares.
    max_id_distance
        A new centroid further than this from its match (standardized Euclidean) gets a
        fresh id instead: it is a new segment, not the old one moved.
    """
    if not model.ready:
        raise ValueError("the model has not finished its warm-up")
    names = model.feature_names
    mean, scale = model.mean, model.scale
    centroids = model.centroids
    standardized = (centroids - mean) / scale

    if previous is not None and previous.feature_names == names:
        old = np.array([s.centroid for s in previous.segments], dtype=np.float64)
        ids = assign_stable_ids(
            [s.segment_id for s in previous.segments],
            (old - mean) / scale,
            standardized,
            max_distance=max_id_distance,
        )
    elif previous is not None:
        # Different features: nothing can be matched, but ids must still not be reused.
        start = max(s.segment_id for s in previous.segments) + 1
        ids = list(range(start, start + len(centroids)))
    else:
        ids = list(range(len(centroids)))

    labels = describe_segments(centroids, names, model.reservoir)
    share_values = list(shares) if shares is not None else model.shares.tolist()
    if len(share_values) != len(centroids):
        raise ValueError("shares needs one value per cluster")
    total = sum(share_values)
    if total > 0:
        share_values = [s / total for s in share_values]
    spreads = model.spreads.tolist()

    return SegmentSnapshot(
        version=version if version is not None else (previous.version + 1 if previous else 1),
        created_at=created_at,
        feature_names=names,
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        n_seen=model.n_seen,
        segments=tuple(
            Segment(
                segment_id=ids[i],
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
class SegmentDrift:
    """How one segment changed between two snapshots.

    ``previous_share``/``share`` are ``None`` where the segment is absent from that
    snapshot; ``centroid_shift`` is in the new snapshot's standardized units (``None``
    unless the segment is in both).
    """

    segment_id: int
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
    segments: tuple[SegmentDrift, ...]
    # (id, id, distance) of new-snapshot centroid pairs closer than the merge threshold.
    close_pairs: tuple[tuple[int, int, float], ...]

    @property
    def flagged(self) -> tuple[SegmentDrift, ...]:
        return tuple(s for s in self.segments if s.flags)

    @property
    def max_centroid_shift(self) -> float:
        return max((s.centroid_shift or 0.0 for s in self.segments), default=0.0)


def drift_report(
    previous: SegmentSnapshot,
    current: SegmentSnapshot,
    *,
    move_threshold: float = 0.5,
    split_share_factor: float = 2.0,
    split_spread_factor: float = 1.5,
    merge_distance: float = 0.75,
    retire_share: float = 0.01,
) -> DriftReport:
    """Compare two snapshots segment by segment (segments are matched by id).

    Flags
    -----
    ``new`` / ``gone``
        The id exists only in ``current`` / only in ``previous``.
    ``moved``
        The centroid moved more than ``move_threshold`` standardized units.
    ``split``
        The segment holds at least ``split_share_factor`` times the median share of the
        others *and* its spread is at least ``split_spread_factor`` times their median
        spread: a big, loose group that more clusters would likely cut in two.
    ``merge``
        Its centroid is closer than ``merge_distance`` (standardized Euclidean) to
        another one: the two segments hardly differ.
    ``retire``
        Its share fell below ``retire_share``.

    Examples
    --------
    >>> def snap(version, segments):
    ...     return SegmentSnapshot(version, datetime(2024, 1, version, tzinfo=UTC), ("a",),
    ...                            (0.0,), (1.0,), tuple(segments))
    >>> old = snap(1, [Segment(0, "x", (0.0,), 0.6, 1.0), Segment(1, "y", (3.0,), 0.4, 1.0)])
    >>> new = snap(2, [Segment(0, "x", (0.1,), 0.995, 1.0), Segment(1, "y", (3.0,), 0.005, 1.0)])
    >>> [(s.segment_id, s.flags) for s in drift_report(old, new).segments]
    [(0, ()), (1, ('retire',))]
    """
    scale = np.array(current.scale, dtype=np.float64)
    before = {s.segment_id: s for s in previous.segments}
    after = {s.segment_id: s for s in current.segments}

    close: list[tuple[int, int, float]] = []
    now = list(current.segments)
    for i, a in enumerate(now):
        for b in now[i + 1 :]:
            distance = float(np.linalg.norm((np.array(a.centroid) - np.array(b.centroid)) / scale))
            if distance < merge_distance:
                close.append((a.segment_id, b.segment_id, distance))

    report: list[SegmentDrift] = []
    for segment in current.segments:
        flags: list[str] = []
        old = before.get(segment.segment_id)
        shift: float | None = None
        if old is None:
            flags.append(NEW)
        else:
            shift = float(
                np.linalg.norm((np.array(segment.centroid) - np.array(old.centroid)) / scale)
            )
            if shift > move_threshold:
                flags.append(MOVED)
        others = [s for s in current.segments if s.segment_id != segment.segment_id]
        if others:
            other_share = median(s.share for s in others)
            other_spread = median(s.spread for s in others)
            if (
                segment.share >= split_share_factor * other_share
                and segment.spread >= split_spread_factor * other_spread
            ):
                flags.append(SPLIT)
        partners = tuple(
            b if a == segment.segment_id else a for a, b, _ in close if segment.segment_id in (a, b)
        )
        if partners:
            flags.append(MERGE)
        if segment.share < retire_share:
            flags.append(RETIRE)
        report.append(
            SegmentDrift(
                segment_id=segment.segment_id,
                label=segment.label,
                previous_share=old.share if old else None,
                share=segment.share,
                centroid_shift=shift,
                flags=tuple(flags),
                merge_with=partners,
            )
        )
    for segment in previous.segments:
        if segment.segment_id not in after:
            report.append(
                SegmentDrift(
                    segment_id=segment.segment_id,
                    label=segment.label,
                    previous_share=segment.share,
                    share=None,
                    centroid_shift=None,
                    flags=(GONE,),
                )
            )
    return DriftReport(
        previous_version=previous.version,
        version=current.version,
        segments=tuple(report),
        close_pairs=tuple(close),
    )
