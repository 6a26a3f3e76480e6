"""The worker's asyncio Redis store: same keys and scripts as RedisStore, outbox positions."""

from __future__ import annotations

import asyncio

import pytest

from tests.stores.test_contract import scored_state
from tierstream.stores import Batch, FencedError, OffsetsMovedError
from tierstream.stores.redis import RedisStore
from tierstream.stores.redis_async import AsyncRedisStore

pytestmark = pytest.mark.integration


@pytest.fixture(params=["redis_url", "redis_cluster_url"])
def stores(request: pytest.FixtureRequest):
    # The single Redis and the private Redis Cluster (redis+cluster://, tests/services.py).
    url = request.getfixturevalue(request.param)
    sync = RedisStore(url, partitions=2, namespace=f"ta{id(request)}")
    sync.wipe()
    yield sync, AsyncRedisStore(sync)
    sync.wipe()
    sync.close()


def test_commits_trim_and_read_the_outbox_by_absolute_position(stores) -> None:
    sync, store = stores

    async def scenario() -> None:
        lease = await store.acquire(1)
        first = Batch(offsets={"purchases": 2}, states=[scored_state("ann")], changes=[b"a", b"b"])
        assert await store.commit(lease, first) == 2  # entries ever queued
        second = Batch(offsets={"purchases": 5}, expected={"purchases": 2}, changes=[b"c"])
        assert await store.commit(lease, second, trim_to=1) == 3  # drops "a" first
        assert await store.outbox(1) == (1, [b"b", b"c"])
        assert await store.outbox(1, 1) == (1, [b"b"])
        await store.trim(lease, 3)
        await store.trim(lease, 3)  # a repeat drops nothing more
        assert await store.outbox(1) == (3, [])
        assert await store.offsets(1) == {"purchases": 5} == sync.offsets(1)
        assert (await store.load(1, ["ann", "nobody"]))["ann"] == sync.load(1, ["ann"])["ann"]
        # The same batch again (a lost reply) is applied once and says where the outbox is.
        assert await store.commit(lease, second) == 3
        with pytest.raises(OffsetsMovedError):
            await store.commit(lease, Batch(offsets={"purchases": 9}, expected={"purchases": 2}))
        newer = await store.acquire(1)
        with pytest.raises(FencedError):
            await store.commit(lease, Batch(changes=[b"zombie"]))
        with pytest.raises(FencedError):
            await store.trim(lease, 3)
        assert newer.epoch == lease.epoch + 1 and await store.outbox(1) == (3, [])
        await store.close()

    asyncio.run(scenario())
