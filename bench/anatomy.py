"""Where a running worker's time goes: ``tierstream worker`` with timers around its steps.

``python -m bench.anatomy OUT`` runs exactly what ``tierstream worker`` runs (same
settings from the environment, same ``build_app``), after wrapping these methods with
wall-clock timers (nothing in streams/ is edited; the wrappers only measure):

* ``Runtime.handle_messages``: one call per fetch (up to BATCH_MAX events over all owned
  partitions, streams/intake.py); the time between calls is the consumer's fetching.
* ``Runtime._step``: one call per shard of a batch (shards of a batch run concurrently).
* ``Runtime._process``: one shard's step: parse, await the load, score, await the commit.
* ``ShardLogic.parse`` / ``ShardLogic.apply``: the pure parts of it (no I/O).
* ``Learner.learn``: the learning step, when behaviours are learned from the stream.
* ``Runtime._commit`` / ``Publisher.publish``: the commit script, then enqueueing the
  step's entries on the producer (no waiting for acknowledgements).

Totals are written to OUT as JSON every second and at exit.
"""

from __future__ import annotations

import atexit
import functools
import json
import sys
import threading
import time
from collections import defaultdict
from typing import Any

TOTALS: dict[str, float] = defaultdict(float)
COUNTS: dict[str, int] = defaultdict(int)
STARTED = time.monotonic()
FIRST: dict[str, float] = {}


def _timed_async(name: str, fn: Any, sizer: Any = None) -> Any:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.monotonic()
        FIRST.setdefault(name, t - STARTED)
        try:
            return await fn(*args, **kwargs)
        finally:
            TOTALS[name] += time.monotonic() - t
            COUNTS[name] += 1
            if sizer is not None:
                COUNTS[name + ".items"] += sizer(*args, **kwargs)

    return wrapper


def _timed(name: str, fn: Any, sizer: Any = None) -> Any:
    """Wall time of a synchronous call, and its CPU time (``<name>.cpu``: this thread's
    only, so on a shared machine it leaves out the waits for a core that wall time counts)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t, cpu = time.monotonic(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            TOTALS[name + ".cpu"] += time.thread_time() - cpu
            TOTALS[name] += time.monotonic() - t
            COUNTS[name] += 1
            if sizer is not None:
                COUNTS[name + ".items"] += sizer(*args, **kwargs)

    return wrapper


def snapshot() -> dict[str, Any]:
    return {
        "elapsed": time.monotonic() - STARTED,
        "first": dict(FIRST),
        "seconds": dict(TOTALS),
        "calls": dict(COUNTS),
    }


def main(argv: list[str]) -> int:
    out_path = argv[0]
    from streams import worker as worker_module
    from streams.learner import Learner
    from streams.processor import ShardLogic
    from streams.publisher import Publisher

    runtime = worker_module.Runtime
    runtime.handle_messages = _timed_async(  # type: ignore[method-assign]
        "handle",
        runtime.handle_messages,
        lambda self, by_shard: sum(len(batch) for batch in by_shard.values()),
    )
    runtime._step = _timed_async("step", runtime._step)  # type: ignore[method-assign]
    runtime._process = _timed_async(  # type: ignore[method-assign]
        "process", runtime._process, lambda self, owned, messages: len(messages)
    )
    runtime._commit = _timed_async("commit", runtime._commit)  # type: ignore[method-assign]
    Publisher.publish = _timed_async(  # type: ignore[method-assign]
        "publish", Publisher.publish, lambda self, first, entries: len(entries)
    )
    ShardLogic.parse = _timed(  # type: ignore[method-assign]
        "parse", ShardLogic.parse, lambda self, messages: len(messages)
    )
    ShardLogic.apply = _timed("apply", ShardLogic.apply)  # type: ignore[method-assign]
    # The learning step (TIERSTREAM_LEARN_BEHAVIOURS): "learn" on steps of events (items:
    # the applied events it learned from), "learn_rescore" on timer and sweep steps.
    on_events = _timed("learn", Learner.learn, lambda self, scorer, states, tallies, n: n)
    on_rescores = _timed(
        "learn_rescore", Learner.learn, lambda self, scorer, states, tallies, n: len(states)
    )

    def learn(self: Any, scorer: Any, states: Any, tallies: Any, events: int) -> None:
        timed = on_events if events else on_rescores
        timed(self, scorer, states, tallies, events)

    Learner.learn = learn  # type: ignore[method-assign]

    def dump() -> None:
        with open(out_path, "w", encoding="utf-8") as out:
            json.dump(snapshot(), out)

    def loop() -> None:
        while True:
            time.sleep(1.0)
            dump()

    threading.Thread(target=loop, daemon=True).start()
    atexit.register(dump)

    from tierstream.cli import worker_command

    worker_command(loglevel="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
