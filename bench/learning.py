"""CDNOW through the worker's step logic, learning behaviours from the stream, in one process.

    python -m bench.learning [--customers-below ID] [--batch N] [--merge-every N] [--file-order]

What ``tierstream worker`` does with ``TIERSTREAM_LEARN_BEHAVIOURS=true``, without Kafka:
events go to ``ShardProcessor``s (one per partition, event clock, in-memory store) in
batches; every ``--merge-every`` events the coordinator merges the shards' statistics and,
when it publishes a version, every shard adopts it and is swept (cause ``model_update``),
as ``Runtime.refresh_behaviours`` does. At the end the final model's assignment of the final
states is compared with batch k-means (scikit-learn, 10 inits) on the same features (ARI).
The integration test through Kafka checks the same figure with real workers.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections import defaultdict
from functools import partial
from typing import Any

import numpy as np

from models.features import DEFAULT_FEATURE_SPEC
from models.snapshot import BehaviourSnapshot, assign
from scoring.days import day_start
from scoring.engine import Scorer
from scoring.events import EngagementEvent, PurchaseEvent
from streams.behaviour_learning import LearningCoordinator
from streams.deadletters import RawMessage
from streams.learner import Learner, shard_learner
from streams.processor import ShardProcessor
from streams.producer import keyed_records
from tierstream.behaviours import SNAPSHOT_META, SnapshotBehaviour, customer_features
from tierstream.clock import EventClock
from tierstream.settings import load_scoring_config
from tierstream.stores.base import StateStore, shard_for
from tierstream.stores.memory import MemoryStore


def batch_agreement(
    scorer: Scorer, store: StateStore, snapshot: BehaviourSnapshot, k: int, half_life: float = 0
) -> float:
    """ARI of ``snapshot``'s assignment vs scikit-learn KMeans on every stored state (with
    ``half_life``: each weighted 2^(-recency / half_life), in the scaling and k-means, as
    the learned statistics weigh them)."""
    from sklearn.cluster import KMeans  # noqa: PLC0415 - evaluation only
    from sklearn.metrics import adjusted_rand_score  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    states = sorted(store.scan(), key=lambda s: s.customer_id)
    # Everyone as of the final clock (the latest day any state was brought to).
    as_of = day_start(max(s.clock_day or 0 for s in states))
    vectors = [customer_features(scorer, state, as_of) for state in states]
    names = DEFAULT_FEATURE_SPEC.names
    x = np.array([[v[n] for n in names] for v in vectors])
    weights = None
    if half_life > 0:
        recency = np.rint(np.expm1(x[:, names.index("log_recency_days")]))
        weights = 0.5 ** (recency / half_life)
    scaled = StandardScaler().fit(x, sample_weight=weights).transform(x)
    reference = KMeans(k, n_init=10, random_state=0).fit_predict(scaled, sample_weight=weights)
    learned = [assign(snapshot, v).behaviour_id for v in vectors]
    return float(adjusted_rand_score(reference, learned))


def run(
    events: list[Any],
    partitions: int = 4,
    batch: int = 500,
    merge_every: int = 5000,
    k: int = 5,
    seeds: int = 1000,
    distance: float = 0.05,
    half_life: float = 0,
) -> dict[str, Any]:
    store = MemoryStore(partitions)
    scorer = Scorer(load_scoring_config(None))
    kinds = {"purchases": PurchaseEvent, "engagements": EngagementEvent}
    processors = []
    for shard in range(partitions):
        processor = ShardProcessor(store, scorer, store.acquire(shard), kinds, EventClock())
        processor.learner = shard_learner(seeds, shard, store.shard_tally, half_life)
        processors.append(processor)
    coordinator = LearningCoordinator(k, seeds, distance, 0)
    pending: dict[int, list[RawMessage]] = defaultdict(list)
    offsets: dict[int, int] = defaultdict(int)
    versions: list[dict[str, Any]] = []
    # Time of the learning step (Learner.learn) on the event path and in the sweeps.
    spent = {"events": 0.0, "sweeps": 0.0, "timer": 0.0}
    phase = ["events"]
    learn = Learner.learn

    def timed(self: Learner, *args: Any) -> None:
        started = time.perf_counter()
        learn(self, *args)
        spent[phase[0]] += time.perf_counter() - started

    for processor in processors:
        processor.learner.learn = partial(timed, processor.learner)  # type: ignore[method-assign,union-attr]

    def flush(shard: int) -> None:
        processors[shard].process(pending.pop(shard, []))

    def merge_and_sweep(events_in: int) -> None:
        status = coordinator.merge(store)
        if not status or not status["published"]:
            return
        raw = store.get_meta(SNAPSHOT_META)
        assert raw is not None
        snapshot = BehaviourSnapshot.from_bytes(raw)
        versions.append(
            {"version": snapshot.version, "events": events_in, "shift": status["shift"]}
        )
        model = scorer.with_behaviour(SnapshotBehaviour(snapshot))
        phase[0] = "sweeps"
        for processor in processors:
            processor.scorer = model
            ids = store.customer_ids(processor.shard)
            for start in range(0, len(ids), 500):
                states = store.load(processor.shard, ids[start : start + 500])
                processor._commit(processor.rescore(states, "model_update", "learned"))
            store.set_meta(f"segments_swept:{processor.shard}", str(snapshot.version).encode())
        phase[0] = "events"

    for count, (is_purchase, key, value) in enumerate(keyed_records(events), 1):
        shard = shard_for(key.decode(), partitions)
        topic = "purchases" if is_purchase else "engagements"
        pending[shard].append(RawMessage(topic, shard, offsets[shard], key, value))
        offsets[shard] += 1
        if len(pending[shard]) >= batch:
            flush(shard)
        if count % merge_every == 0:
            for s in list(pending):
                flush(s)
            merge_and_sweep(count)
    for s in list(pending):
        flush(s)
    phase[0] = "timer"
    for processor in processors:  # the timer's last advance: everyone to the final clock
        due = store.due(processor.shard, processor.clock.now().timestamp(), 10**9)
        if due:
            processor._commit(processor.advance(due, store.load(processor.shard, due)))
    phase[0] = "events"
    for _ in range(30):  # the stream is over: let the versions settle
        before = len(versions)
        merge_and_sweep(len(events))
        if len(versions) == before:
            break
    raw = store.get_meta(SNAPSHOT_META)
    assert raw is not None
    final = BehaviourSnapshot.from_bytes(raw)
    return {
        "versions": versions,
        "final_version": final.version,
        "ari": batch_agreement(processors[0].scorer, store, final, k, half_life),
        "learn_us_per_event": spent["events"] / max(len(events), 1) * 1e6,
        "learn_us_per_applied_event": spent["events"]
        / max(store.tallies().get("applied", 0), 1)
        * 1e6,
        "sweep_seconds": spent["sweeps"],
        "store": store,
        "snapshot": final,
    }


def main(argv: list[str]) -> int:
    from tierstream.readers import bundled_cdnow_path, read_events  # noqa: PLC0415
    from tierstream.replay import ReplayStats, collect  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m bench.learning")
    parser.add_argument("--customers-below", default=None)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--merge-every", type=int, default=5000)
    parser.add_argument("--no-gc", action="store_true", help="pause the cyclic collector")
    parser.add_argument("--half-life", type=float, default=0, help="forgetting, in days")
    parser.add_argument(
        "--file-order",
        action="store_true",
        help="events in file order (CDNOW's is by customer) instead of time order",
    )
    args = parser.parse_args(argv)
    events = collect(read_events(bundled_cdnow_path(), "cdnow"), ReplayStats(), strict=False)
    if args.customers_below:
        events = [e for e in events if e.customer_id < args.customers_below]
    if not args.file_order:  # as a live stream (and the Kafka tests) would deliver them
        events.sort(key=lambda e: e.occurred_at)
    if args.no_gc:
        # This process holds every event and, in its in-memory store, every state: heaps a
        # worker does not have (its states are in Redis), whose collection the learning
        # step's allocations would otherwise pay for.
        gc.freeze()
        gc.disable()
    started = time.monotonic()
    result = run(events, batch=args.batch, merge_every=args.merge_every, half_life=args.half_life)
    print(
        json.dumps(
            {
                "events": len(events),
                "seconds": round(time.monotonic() - started, 1),
                "versions": result["versions"],
                "ari": round(result["ari"], 4),
                "learn_us_per_event": round(result["learn_us_per_event"], 2),
                "learn_us_per_applied_event": round(result["learn_us_per_applied_event"], 2),
                "sweep_learning_seconds": round(result["sweep_seconds"], 2),
                "labels": [s.label for s in result["snapshot"].behaviours],
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
