"""The coordinator of behaviours learned from the stream (the owner of shard 0 runs it).

Like the quintile cut points, one worker merges and publishes for everyone: the owner of
shard 0, every ``learn_merge_seconds``. It sums the shards' learned statistics (their
``stats`` hashes), and

* before any model exists, seeds version 1 from the first customers' vectors (k-means++)
  once ``learn_seed_customers`` have been seen;
* afterwards, once every shard has been swept with the version in force (so the
  statistics describe the population under that model), computes the next model (each
  behaviour's centroid: the mean of its members; the scaling: the population's) and
  publishes it when a centroid moved more than ``learn_publish_distance`` standardized
  units.

Publishing is writing the snapshot where ``tierstream behaviours`` writes it
(``segments_snapshot``): every worker adopts it through ``Runtime.refresh_behaviours`` and
sweeps its shards (cause ``model_update``), which re-assigns every customer and so moves
its contribution to its new behaviour: the next merge is the next Lloyd step over the whole
population. Versions settle when no centroid moves more than the distance. The last
merge's figures are kept in ``segments_learning`` for ``tierstream behaviours --show``.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from models.features import DEFAULT_FEATURE_SPEC
from models.learning import PopulationStats, in_feature_order, merged_snapshot, seed_snapshot
from models.snapshot import BehaviourSnapshot
from tierstream.behaviours import SNAPSHOT_META
from tierstream.settings import Settings
from tierstream.stores.base import StateStore

if TYPE_CHECKING:
    from streams.runtime_view import RuntimeView

log = logging.getLogger("tierstream.learning")

STATUS_META = "segments_learning"


def learning_coordinator(settings: Settings) -> LearningCoordinator | None:
    if not settings.learn_behaviours:
        return None
    return LearningCoordinator(
        settings.learn_k,
        settings.learn_seed_customers,
        settings.learn_publish_distance,
        settings.learn_merge_seconds,
    )


class LearningCoordinator:
    def __init__(self, k: int, seeds: int, distance: float, every: float) -> None:
        self.k = k
        self.seeds = seeds
        self.distance = distance
        self.every = every
        self.names = DEFAULT_FEATURE_SPEC.names
        self._next = 0.0

    async def tick(self, runtime: RuntimeView) -> None:
        now = time.monotonic()
        if now < self._next or 0 not in runtime.shards:
            return
        self._next = now + self.every
        status = await runtime._admin(partial(self.merge, runtime.admin_store))
        if status is not None and status["published"]:
            runtime.counts["models_learned"] += 1

    def merge(self, store: StateStore, now: datetime | None = None) -> dict[str, Any] | None:
        """One merge (blocking store calls): publish a new version if it is due. Returns
        what it found (also kept in ``segments_learning``), or None when it had to wait."""
        raw = store.get_meta(SNAPSHOT_META)
        current = BehaviourSnapshot.from_bytes(raw) if raw is not None else None
        if current is not None and not swept(store, current.version):
            return None  # the statistics still mix the previous model's assignments
        population = PopulationStats.from_tallies(store.tallies(), len(self.names))
        created = now or datetime.now(UTC)
        status: dict[str, Any] = {
            "checked_at": created.isoformat(),
            "events": population.events,
            "customers": population.customers,
        }
        if current is None:
            fresh = seed_snapshot(
                population, self.names, self.k, self.seeds, created, partitions=store.partitions
            )
            if fresh is None:
                return None
            status |= {"version": 1, "shift": None, "published": True}
        else:
            merge = merged_snapshot(population, in_feature_order(current, self.names), created)
            published = merge.shift > self.distance
            fresh = merge.snapshot if published else None
            status |= {
                "version": merge.snapshot.version if published else current.version,
                "shift": merge.shift,
                "published": published,
            }
        if fresh is not None:
            store.set_meta(SNAPSHOT_META, fresh.to_bytes())
            log.info(
                "published learned behaviour model version %d (%d events, shift %s)",
                fresh.version,
                population.events,
                status["shift"],
            )
        store.set_meta(STATUS_META, json.dumps(status, sort_keys=True).encode())
        return status


def swept(store: StateStore, version: int) -> bool:
    """Whether every shard has been re-assigned with model ``version`` (its sweep marker)."""
    for shard in range(store.partitions):
        marker = store.get_meta(f"segments_swept:{shard}")
        if marker is None or int(marker) < version:
            return False
    return True
