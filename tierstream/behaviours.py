"""Behaviour segments: learn the online model from customer state, publish snapshots.

Learning happens in one place (``tierstream behaviours``, run by an operator or a scheduler):
it reads every customer's state, feeds the features to ``models.BehaviourClusterer`` in a
seeded order, freezes a ``BehaviourSnapshot`` whose behaviour ids continue the previous
snapshot's, and stores it in the state store's metadata with its version. Everyone that
reads a customer (export, ``tierstream customer``, the API) assigns the
behaviour with that same snapshot, so two readers agree for the same snapshot version.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from models.clustering import BehaviourClusterer
from models.features import CustomerFeaturesInput, build_features
from models.snapshot import (
    Assignment,
    BehaviourSnapshot,
    DriftReport,
    assign,
    drift_report,
    snapshot_from_model,
)
from scoring.days import utc_day
from scoring.engine import Scorer, Values
from scoring.state import CustomerState
from tierstream.published import SNAPSHOT_META as SNAPSHOT_META  # the model is published here


def customer_features(scorer: Scorer, state: CustomerState, as_of: datetime) -> dict[str, float]:
    """The model's feature vector for one customer as of a moment (state is not changed)."""
    day = max(utc_day(as_of), state.clock_day or 0)
    return features_of(scorer.values(state, day))


def features_of(values: Values) -> dict[str, float]:
    """The model's feature vector of a customer's RFM and engagement figures."""
    return build_features(
        CustomerFeaturesInput(
            recency_days=values.recency_days,
            frequency=values.frequency,
            monetary=values.monetary,
            engagement={kind: float(weight) for kind, weight in values.engagement.items()},
        )
    )


@dataclass(frozen=True)
class LearnResult:
    snapshot: BehaviourSnapshot
    sizes: dict[int, int]
    drift: DriftReport | None


def learn_snapshot(
    scorer: Scorer,
    states: Iterable[CustomerState],
    as_of: datetime,
    *,
    previous: BehaviourSnapshot | None = None,
    k: int = 5,
    seed: int = 0,
) -> LearnResult:
    """Learn behaviours from every customer; deterministic for the same states and seed."""
    # Sorted then seeded-shuffled: independent of store scan order, not biased by id order.
    ordered = sorted(states, key=lambda s: s.customer_id)
    vectors = [customer_features(scorer, state, as_of) for state in ordered]
    random.Random(seed).shuffle(vectors)  # noqa: S311 - a learning order, not a secret
    model = BehaviourClusterer(n_clusters=k, seed=seed, warmup=min(1000, max(k, len(vectors) // 2)))
    for vector in vectors:
        model.learn_one(vector)
    if not model.ready:
        raise ValueError(f"too few customers ({len(vectors)}) to learn {k} behaviours")
    clusters = Counter(model.predict_one(v) for v in vectors)
    shares = [clusters.get(i, 0) / len(vectors) for i in range(k)]
    snapshot = snapshot_from_model(model, created_at=as_of, previous=previous, shares=shares)
    sizes = Counter(assign(snapshot, v).behaviour_id for v in vectors)
    drift = drift_report(previous, snapshot) if previous is not None else None
    return LearnResult(snapshot, dict(sizes), drift)


def behaviour(
    snapshot: BehaviourSnapshot, scorer: Scorer, state: CustomerState, as_of: datetime
) -> Assignment:
    return assign(snapshot, customer_features(scorer, state, as_of))


def behaviour_record(
    snapshot: BehaviourSnapshot, scorer: Scorer, state: CustomerState, as_of: datetime
) -> dict[str, Any]:
    """A customer's ``behaviour`` as the API and the CLI show it. ``segment_id`` is the
    deprecated first name of ``behaviour_id`` (the same id), kept for existing readers."""
    assignment = behaviour(snapshot, scorer, state, as_of)
    return {
        "behaviour_id": assignment.behaviour_id,
        "segment_id": assignment.behaviour_id,
        "label": assignment.label,
        "model_version": snapshot.version,
    }


class SnapshotBehaviour:
    """A published snapshot as the scorer's ``BehaviourModel``: the worker and the replay
    assign each re-scored customer's behaviour segment with it, so the behaviour travels on
    the tier-change events (``previous_behaviour`` / ``new_behaviour``)."""

    def __init__(self, snapshot: BehaviourSnapshot) -> None:
        self.snapshot = snapshot

    @property
    def version(self) -> int:
        return self.snapshot.version

    def assign(self, values: Values) -> tuple[int, str]:
        assignment = assign(self.snapshot, features_of(values))
        return assignment.behaviour_id, assignment.label
