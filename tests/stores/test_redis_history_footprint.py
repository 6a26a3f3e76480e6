"""What the recent-change history costs in Redis, per customer, on CDNOW (docs/state-layout.md).

Every CDNOW customer (23,570) is committed with its tier changes (172,109, as of
1998-07-01) through ``record_changes``, as the worker's commits write them, for several
history lengths; memory is summed with MEMORY USAGE over the history keys.
"""

from __future__ import annotations

import pytest
import redis

from tests.integration.api_support import cdnow, commit_states
from tierstream.stores.redis import RedisStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
# Bytes per customer the docs quote for the default of 5 changes (measured: about 494 on
# Redis 7.0), with room for allocator differences between Redis builds.
BUDGET_AT_5 = 560


def history_bytes(client: redis.Redis, namespace: str) -> int:
    total = 0
    for key in client.scan_iter(match=f"{{{namespace}:p*".encode(), count=1000):
        if b"}:h:" in key:
            total += client.memory_usage(key, samples=0) or 0
    return total


@pytest.mark.parametrize("length", [0, 1, 5])
def test_history_bytes_per_customer(redis_url, length):
    replayed = cdnow()
    namespace = f"histfoot{length}"
    store = RedisStore(redis_url, partitions=PARTITIONS, namespace=namespace, history_length=length)
    client = redis.Redis.from_url(redis_url)
    store.wipe()
    try:
        commit_states(store, replayed.states.values(), replayed.changes)
        per_customer = history_bytes(client, namespace) / len(replayed.states)
        print(f"\nhistory_length={length}: {per_customer:.0f} bytes per customer")
        if length == 0:
            assert per_customer == 0
        if length == 5:
            assert per_customer <= BUDGET_AT_5
        sample = next(iter(replayed.states))
        assert len(store.history(sample, limit=10)) == min(
            length, sum(1 for c in replayed.changes if c.customer_id == sample)
        )
    finally:
        store.wipe()
        store.close()
        client.close()
