"""The replay streams: its memory does not grow with the file, only with what it must hold
(the customers' states, bounded by the window, and one sorted run of the external sort)."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

from bench.mix import MixSpec, generate
from scoring.engine import Scorer
from streams.producer import event_json
from tierstream import ordering
from tierstream.ordering import TimeOrdered
from tierstream.readers import read_events
from tierstream.replay import ReplayStats, collect, replay, valid_events

END = datetime(2026, 6, 1, tzinfo=UTC)
CUSTOMERS = 200


def history(tmp_path: Path, events: int) -> Path:
    # The same customers, the same density of events per day: a longer file is a longer
    # history, not busier customers.
    spec = MixSpec(events=events, customers=CUSTOMERS, days=events / 400, seed=7)
    path = tmp_path / f"h{events}.jsonl"
    path.write_bytes(b"".join(event_json(e) + b"\n" for e in generate(spec, END).events))
    return path


def peak_of_replay(path: Path, scorer: Scorer) -> int:
    tracemalloc.start()
    try:
        stats = ReplayStats()
        events = valid_events(read_events(path, "jsonl"), stats, strict=True)
        replay(events, scorer, as_of=END, emit=lambda change: None, stats=stats)
        assert stats.events > 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_replay_memory_does_not_grow_with_the_file(tmp_path, default_config, monkeypatch):
    # Small runs and blocks, so that small files exercise the spilling and the merge.
    monkeypatch.setattr(ordering, "CHUNK_EVENTS", 2_000)
    monkeypatch.setattr(ordering, "BLOCK", 100)
    monkeypatch.setattr(ordering, "FAN_IN", 4)
    scorer = Scorer(default_config.model_copy(update={"window_days": 7}))
    small, large = history(tmp_path, 6_000), history(tmp_path, 24_000)
    peaks = [peak_of_replay(path, scorer) for path in (small, large)]
    assert peaks[1] < peaks[0] * 1.3, f"peak {peaks[0]:,} B for 6k events, {peaks[1]:,} B for 24k"


def test_the_external_sort_gives_the_stable_in_memory_order(tmp_path, monkeypatch):
    path = history(tmp_path, 9_000)  # late arrivals and duplicates: out of order in the file
    events = collect(read_events(path, "jsonl"), ReplayStats(), strict=True)
    expected = sorted(events, key=lambda e: e.occurred_at)
    monkeypatch.setattr(ordering, "FAN_IN", 4)  # runs merged in two passes
    ordered = TimeOrdered(iter(events), chunk_events=1_000)
    got = list(ordered)
    assert ordered.runs == 3 and ordered.count == len(events)
    assert [(e.event_id, e.occurred_at) for e in got] == [
        (e.event_id, e.occurred_at) for e in expected
    ]
    assert [e.model_dump() for e in got] == [e.model_dump() for e in expected]
