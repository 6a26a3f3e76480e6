"""The worker's hot path in-process: ``ShardProcessor.process`` on batches of the mix.

Batches are cut the way the worker cuts them: ``take_events(500)`` over all partitions,
then one ``process`` call per shard with that shard's messages (so about 125 messages
per call with 4 partitions). Three runs over the same messages:

1. ``memory``: ``MemoryStore`` (no I/O): the CPU cost of parsing, scoring and encoding.
2. ``redis``: ``RedisStore`` on a fresh namespace of the local Redis, as the worker does.
3. the same as 2 under pyinstrument (statistical, 1 ms interval): where the time goes.

Everything the worker does outside ``process`` (Faust's consumer and stream, the thread
hop of ``asyncio.to_thread``, publishing the outbox) is not in here: compare
``us_per_event`` with the worker's steady rate to see that share.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from scoring.engine import Scorer
from scoring.events import EngagementEvent, InputEvent, PurchaseEvent
from scoring.state import CustomerState
from streams.deadletters import RawMessage
from streams.processor import ShardProcessor
from streams.producer import event_json
from tierstream.clock import WallClock
from tierstream.settings import load_scoring_config
from tierstream.stores.base import StateStore, shard_for
from tierstream.stores.memory import MemoryStore

TOPICS = {"purchases": PurchaseEvent, "engagements": EngagementEvent}
BATCH = 500  # the worker's TIERSTREAM_BATCH_MAX default
MAX_FUTURE = timedelta(days=1)


def messages(events: Sequence[InputEvent], partitions: int = 4) -> list[RawMessage]:
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    out = []
    for event in events:
        topic = "purchases" if isinstance(event, PurchaseEvent) else "engagements"
        shard = shard_for(event.customer_id, partitions)
        offset = offsets[(topic, shard)]
        offsets[(topic, shard)] += 1
        out.append(RawMessage(topic, shard, offset, event.customer_id.encode(), event_json(event)))
    return out


def batches(raw: Sequence[RawMessage]) -> Iterator[tuple[int, list[RawMessage]]]:
    for start in range(0, len(raw), BATCH):
        by_shard: dict[int, list[RawMessage]] = defaultdict(list)
        for message in raw[start : start + BATCH]:
            by_shard[message.partition].append(message)
        yield from by_shard.items()


def run(store: StateStore, raw: Sequence[RawMessage], partitions: int = 4) -> dict[str, Any]:
    scorer = Scorer(load_scoring_config(None))
    processors = {
        shard: ShardProcessor(store, scorer, store.acquire(shard), dict(TOPICS), WallClock())
        for shard in range(partitions)
    }
    calls = changes = 0
    started = time.perf_counter()
    for shard, batch in batches(raw):
        result = processors[shard].process(batch)
        calls += 1
        changes += len(result.changes)
        # the worker drains the outbox after every step; keep it from growing here
        store.ack(processors[shard].lease, len(store.outbox(shard, 100_000)))
    seconds = time.perf_counter() - started
    return {
        "events": len(raw),
        "calls": calls,
        "changes": changes,
        "seconds": seconds,
        "us_per_event": seconds / len(raw) * 1e6,
        "eps": len(raw) / seconds,
    }


def _walk(
    frame: Any, seen: frozenset[str], inclusive: dict[str, float], own: dict[str, float]
) -> None:
    if frame.is_synthetic:
        return  # "[self]" and the like: already in the parent's total_self_time
    ident = f"{frame.function} ({frame.file_path_short}:{frame.line_no})"
    own[ident] = own.get(ident, 0.0) + frame.total_self_time
    if ident not in seen:  # outermost occurrence only: recursion is not counted twice
        inclusive[ident] = inclusive.get(ident, 0.0) + frame.time
        seen = seen | {ident}
    for child in frame.children:
        _walk(child, seen, inclusive, own)


def state_sizes(store: MemoryStore) -> dict[str, Any]:
    """Encoded size of every state (the Redis value), and what the largest ones hold."""
    from tierstream.stores.state_codec import encode_state

    states = list(store.scan())
    if not states:
        return {}
    sizes = sorted(len(encode_state(state)) for state in states)
    biggest = max(states, key=lambda state: len(encode_state(state)))
    n = len(sizes)
    return {
        "customers": n,
        "mean": round(sum(sizes) / n, 1),
        "p50": sizes[n // 2],
        "p99": sizes[min(n - 1, int(n * 0.99))],
        "max": sizes[-1],
        "largest_seen_digests": len(biggest.seen),
        "largest_purchase_days": len(biggest.days),
        "largest_engagement_days": len(biggest.engagement_days),
    }


def stages(raw: Sequence[RawMessage]) -> dict[str, Any]:
    """Unprofiled cost of each stage of ``process``, calling the same functions in the same
    pattern (per batch: parse every message, load, apply every event, then per touched
    customer the next rescore moment and the Redis encoding, per change its encoding).

    ``decode`` is what loading a customer costs in ``RedisStore.load`` (JSON to state).
    """
    from streams.deadletters import parse_message
    from tierstream.stores.outbox_codec import encode_change
    from tierstream.stores.state_codec import decode_state, encode_state

    scorer = Scorer(load_scoring_config(None))
    config = scorer.config
    now_clock = WallClock()
    stored: dict[str, bytes] = {}
    spent: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    clock = time.perf_counter
    for _shard, batch in batches(raw):
        now = now_clock.now()
        t = clock()
        events = [parse_message(m, TOPICS[m.topic], config, now + MAX_FUTURE) for m in batch]
        spent["parse"] += clock() - t
        count["parse"] += len(batch)
        ids = {e.customer_id for e in events}
        t = clock()
        states = {cid: decode_state(cid, stored[cid]) for cid in ids if cid in stored}
        spent["decode"] += clock() - t
        count["decode"] += len(states)
        t = clock()
        changes = []
        for event in events:
            state = states.get(event.customer_id)
            if state is None:
                state = states[event.customer_id] = CustomerState(event.customer_id)
            changes.extend(scorer.apply(state, event, now).changes)
        spent["apply"] += clock() - t
        count["apply"] += len(events)
        t = clock()
        for state in states.values():
            scorer.next_rescore_at(state)
        spent["next_rescore_at"] += clock() - t
        count["next_rescore_at"] += len(states)
        t = clock()
        for state in states.values():
            stored[state.customer_id] = encode_state(state)
        spent["encode"] += clock() - t
        count["encode"] += len(states)
        t = clock()
        for change in changes:
            encode_change(change, now)
        spent["encode_change"] += clock() - t
        count["encode_change"] += len(changes)
    n = len(raw)
    return {
        name: {
            "calls": count[name],
            "us_per_call": round(spent[name] / count[name] * 1e6, 2) if count[name] else None,
            "us_per_event": round(spent[name] / n * 1e6, 2),
        }
        for name in spent
    }


def profile(store: StateStore, raw: Sequence[RawMessage]) -> dict[str, Any]:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    profiler.start()
    result = run(store, raw)
    profiler.stop()
    session = profiler.last_session
    root = session.root_frame() if session else None
    inclusive: dict[str, float] = {}
    own: dict[str, float] = {}
    if root is not None:
        _walk(root, frozenset(), inclusive, own)
    total = root.time if root is not None else 0.0
    n = len(raw)

    def table(data: dict[str, float], top: int) -> list[dict[str, Any]]:
        rows = sorted(data.items(), key=lambda kv: kv[1], reverse=True)[:top]
        return [
            {
                "function": name,
                "share": round(seconds / total, 4) if total else None,
                "us_per_event": round(seconds / n * 1e6, 2),
            }
            for name, seconds in rows
        ]

    text = profiler.output_text(unicode=False, color=False, show_all=False)
    return {
        **result,
        "profiled_seconds": total,
        "inclusive": table(inclusive, 40),
        "self": table(own, 25),
        "text": text,
    }


def hot_path(
    events: Sequence[InputEvent], redis_url: str | None, namespace: str | None
) -> dict[str, Any]:
    """The three runs of the module docstring (2 and 3 only with a Redis URL)."""
    raw = messages(events)
    out: dict[str, Any] = {
        "events": len(raw),
        "batch_max": BATCH,
        "at": datetime.now(UTC).isoformat(),
    }
    memory = MemoryStore(4)
    out["memory"] = run(memory, raw)
    out["state_bytes"] = state_sizes(memory)
    out["stages"] = stages(raw)
    if redis_url and namespace:
        from tierstream.stores.redis import RedisStore

        for label, ns in (("redis", namespace + "a"), ("profile", namespace + "b")):
            store = RedisStore(redis_url, partitions=4, namespace=ns)
            try:
                out[label] = run(store, raw) if label == "redis" else profile(store, raw)
            finally:
                store.wipe()
                store.close()
    else:
        out["profile"] = profile(MemoryStore(4), raw)
    return out
