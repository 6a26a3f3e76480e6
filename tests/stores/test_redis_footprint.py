"""The Redis layout's memory per customer on real data (docs/state-layout.md quotes it).

Every CDNOW customer's state after the full replay (as of 1998-07-01, 365-day window)
is committed in batches of 500 with its schedule entry, then read back. Memory is summed
with MEMORY USAGE over the namespace's keys, which, unlike INFO's used_memory, other
clients of the test server cannot disturb.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis

from scoring.engine import Scorer
from tierstream.readers import bundled_cdnow_path, read_events
from tierstream.replay import ReplayStats, collect, replay
from tierstream.stores import Batch, shard_for
from tierstream.stores.redis import RedisStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
BATCH = 500
# Per customer, schedule entry included: the budget docs/state-layout.md promises.
BUDGET = 512


def test_cdnow_customers_fit_the_memory_budget_and_round_trip(redis_url, default_config):
    stats = ReplayStats()
    events = collect(read_events(bundled_cdnow_path(), "cdnow"), stats, strict=False)
    as_of = datetime(1998, 7, 1, tzinfo=UTC)
    result = replay(
        events, Scorer(default_config), as_of=as_of, emit=lambda _: None, stats=ReplayStats()
    )
    states = list(result.states.values())
    assert len(states) == 23_570

    store = RedisStore(redis_url, partitions=PARTITIONS, namespace="footprint")
    client = redis.Redis.from_url(redis_url)
    store.wipe()
    try:
        by_shard: dict[int, list] = {}
        for state in states:
            by_shard.setdefault(shard_for(state.customer_id, PARTITIONS), []).append(state)
        scheduled = 0
        for shard, group in by_shard.items():
            lease = store.acquire(shard)
            for start in range(0, len(group), BATCH):
                chunk = group[start : start + BATCH]
                schedule: dict[str, float | None] = {}
                for state in chunk:
                    moment = result.scorer.next_rescore_at(state)
                    if moment is not None:
                        schedule[state.customer_id] = moment.timestamp()
                scheduled += len(schedule)
                store.commit(lease, Batch(states=chunk, schedule=schedule))

        total = 0
        for key in client.scan_iter(match=b"{footprint:p*}:*", count=1000):
            if b"}:c:" in key or key.endswith(b"}:due"):
                total += client.memory_usage(key, samples=0) or 0
        per_customer = total / len(states)
        print(f"\n{per_customer:.0f} bytes per customer ({scheduled} of {len(states)} scheduled)")
        assert per_customer <= BUDGET

        stored = {state.customer_id: state for state in store.scan()}
        assert stored == result.states
        due = sum(len(store.due(s, float("inf"), len(states))) for s in range(PARTITIONS))
        assert due == scheduled
    finally:
        store.wipe()
        store.close()
        client.close()
