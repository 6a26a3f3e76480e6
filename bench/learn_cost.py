"""The learning step's own cost on CDNOW's event steps, in one process, repeated.

    python -m bench.learn_cost [--repeat N] [--customers-below ID] [--save F | --check F]

``bench.learning`` runs CDNOW (time order) through the worker's step logic with behaviours
learned from the stream; here every call of ``Learner.learn`` on a step of events is
recorded with its inputs (copies of the step's states as they were handed to it, the
scorer, the shard's seed counts), then replayed ``--repeat`` times with only the calls
timed: the figure is seconds spent in ``learn`` / events applied, as the anatomy of a
running worker counts it (bench/anatomy.py), without the worker's other work or Kafka
in the measurement. The machine is shared, so the min and median of the repetitions are
given, with the load average. ``--save`` writes what the calls produced (tallies, the
states' contributions and seeds), ``--check`` compares with such a file: a faster step
must give exactly the same integers.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import pickle
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from scoring.engine import Scorer
from scoring.state import CustomerState
from streams.learner import Learner


@dataclass
class Call:
    shard: int
    scorer: Scorer
    states: list[CustomerState]
    events: int
    seeds_taken: int
    next_ordinal: int


def record(events: list[Any]) -> list[Call]:
    """Run bench.learning's CDNOW pipeline once, keeping every event step's learn call."""
    from bench import learning  # noqa: PLC0415

    calls: list[Call] = []
    learn = Learner.learn

    def recorded(self: Learner, scorer: Scorer, states: Any, tallies: Any, n: int) -> None:
        states = list(states)
        if n:
            calls.append(
                Call(
                    self.shard,
                    scorer,
                    [s.copy() for s in states],
                    n,
                    self.seeds_taken,
                    self.next_ordinal,
                )
            )
        learn(self, scorer, states, tallies, n)

    Learner.learn = recorded  # type: ignore[method-assign]
    try:
        learning.run(events)
    finally:
        Learner.learn = learn  # type: ignore[method-assign]
    return calls


def replay(calls: list[Call], learners: dict[int, Learner]) -> tuple[float, float, list[Any]]:
    """Seconds spent in ``learn`` over all calls (wall clock, and this thread's CPU time:
    on a shared machine the wall clock also counts waiting for a core), and what each
    call produced."""
    spent = cpu = 0.0
    produced: list[Any] = []
    for call in calls:
        learner = learners[call.shard]
        learner.seeds_taken, learner.next_ordinal = call.seeds_taken, call.next_ordinal
        states = [s.copy() for s in call.states]
        tallies: dict[str, int] = {}
        started, started_cpu = time.perf_counter(), time.thread_time()
        learner.learn(call.scorer, states, tallies, call.events)
        cpu += time.thread_time() - started_cpu
        spent += time.perf_counter() - started
        produced.append((sorted(tallies.items()), [(s.learned, s.learned_seed) for s in states]))
    return spent, cpu, produced


def main(argv: list[str]) -> int:
    from tierstream.readers import bundled_cdnow_path, read_events  # noqa: PLC0415
    from tierstream.replay import ReplayStats, collect  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m bench.learn_cost")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--customers-below", default=None)
    parser.add_argument("--save", default=None)
    parser.add_argument("--check", default=None)
    args = parser.parse_args(argv)
    events = collect(read_events(bundled_cdnow_path(), "cdnow"), ReplayStats(), strict=False)
    if args.customers_below:
        events = [e for e in events if e.customer_id < args.customers_below]
    events.sort(key=lambda e: e.occurred_at)
    calls = record(events)
    applied = sum(call.events for call in calls)
    customers = sum(len(call.states) for call in calls)
    learners = {shard: Learner(1000, shard=shard) for shard in {c.shard for c in calls}}
    gc.collect()
    figures, cpu_figures = [], []
    produced: list[Any] = []
    for _ in range(args.repeat):
        spent, cpu, produced = replay(calls, learners)
        figures.append(spent / applied * 1e6)
        cpu_figures.append(cpu / applied * 1e6)
    digest = hashlib.sha256(pickle.dumps(produced)).hexdigest()
    if args.save:
        with open(args.save, "wb") as out:
            pickle.dump(produced, out)
    same = None
    if args.check:
        with open(args.check, "rb") as saved:
            same = pickle.load(saved) == produced
    print(
        json.dumps(
            {
                "calls": len(calls),
                "events_applied": applied,
                "customers_learned": customers,
                "us_per_event": [round(f, 2) for f in figures],
                "min": round(min(figures), 2),
                "median": round(statistics.median(figures), 2),
                "cpu_us_per_event": [round(f, 2) for f in cpu_figures],
                "cpu_min": round(min(cpu_figures), 2),
                "cpu_median": round(statistics.median(cpu_figures), 2),
                "load_average": [round(v, 2) for v in os.getloadavg()],
                "results_sha256": digest,
                "identical_to_saved": same,
            },
            indent=1,
        )
    )
    return 0 if same in (None, True) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
