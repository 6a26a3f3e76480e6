"""The worker's Redis store: the same keys and scripts as ``RedisStore``, on asyncio.

The streaming worker awaits Redis on its event loop (redis.asyncio with hiredis) instead of
handing blocking calls to threads: a thread hop costs tens of microseconds and then waits
for the GIL behind the computation it was meant to overlap. Only what the worker's hot
path and its ownership steps need is here; everything else (API, CLI) uses ``RedisStore``.

No retries inside: every error reaches the worker, which decides (transient errors pause
the shard and retry the same step; see streams/failures.py). Every call is safe to repeat.
"""

from __future__ import annotations

from collections.abc import Collection

import redis.asyncio as aioredis

from scoring.state import CustomerState
from tierstream.stores.base import Batch, FencedError, Lease
from tierstream.stores.redis import (
    _ACK,
    _COMMIT,
    _FENCED,
    CHUNK,
    CONNECT_TIMEOUT,
    SOCKET_TIMEOUT,
    RedisStore,
    _score,
    applied_offsets,
    check_commit_reply,
    commit_request,
)
from tierstream.stores.redis_connect import async_client
from tierstream.stores.state_codec import decode_state as _decode


class AsyncRedisStore:
    """The hot-path subset of ``RedisStore`` (same layout, same scripts), awaitable."""

    def __init__(self, sync: RedisStore) -> None:
        # The key layout and namespace come from the synchronous store, so both always
        # agree on where a shard's keys are.
        self.layout = sync
        # redis.asyncio.Redis, or its RedisCluster for a redis+cluster:// URL.
        self._client: aioredis.Redis[bytes] = async_client(
            sync.url,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT,
            retry_on_timeout=False,
            decode_responses=False,
        )
        self._commit = self._client.register_script(_COMMIT)
        self._ack = self._client.register_script(_ACK)

    async def acquire(self, shard: int) -> Lease:
        meta = self.layout.meta_key(shard)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hincrby(meta, "epoch", 1)
            pipe.hdel(meta, "seq")  # commit numbers restart with every lease
            epoch, _ = await pipe.execute()
        return Lease(shard, int(epoch))

    async def offsets(self, shard: int) -> dict[str, int]:
        return applied_offsets(await self._client.hgetall(self.layout.meta_key(shard)))

    async def load(self, shard: int, customer_ids: Collection[str]) -> dict[str, CustomerState]:
        ids = list(dict.fromkeys(customer_ids))
        if not ids:
            return {}
        keys = [self.layout.state_key(shard, cid) for cid in ids]
        values: list[bytes | None] = []
        for start in range(0, len(keys), CHUNK):
            values += await self._client.mget(keys[start : start + CHUNK])
        return {cid: _decode(cid, data) for cid, data in zip(ids, values, strict=True) if data}

    async def commit(self, lease: Lease, batch: Batch, trim_to: int | None = None) -> int:
        """Commit ``batch`` (see ``StateStore.commit``), first trimming the outbox to the
        absolute position ``trim_to`` (entries published). Returns the outbox end: the
        absolute position after this batch's entries."""
        keys, args = commit_request(self.layout, lease, batch, trim_to)
        return check_commit_reply(lease, batch, await self._commit(keys=keys, args=args))

    async def due(self, shard: int, until: float, limit: int) -> list[str]:
        members = await self._client.zrangebyscore(
            self.layout.due_key(shard), "-inf", _score(until), start=0, num=limit
        )
        return [member.decode("utf-8") for member in members]

    async def outbox(self, shard: int, limit: int | None = None) -> tuple[int, list[bytes]]:
        """(absolute position of the first entry, up to ``limit`` (None: all) unpublished
        entries)."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hget(self.layout.meta_key(shard), "head")
            pipe.lrange(self.layout.outbox_key(shard), 0, -1 if limit is None else limit - 1)
            head, entries = await pipe.execute()
        return int(head or 0), list(entries)

    async def trim(self, lease: Lease, position: int) -> None:
        """Drop the outbox entries before the absolute ``position`` (they were published)."""
        keys = [self.layout.meta_key(lease.shard), self.layout.outbox_key(lease.shard)]
        code, value = await self._ack(keys=keys, args=[lease.epoch, position, 0])
        if code == _FENCED:
            raise FencedError(lease, int(value))

    async def erased(self, shard: int, digests: list[str]) -> list[bytes | None]:
        """The shard's erasure markers of these salted digests (None: not erased)."""
        if not digests:
            return []
        return list(await self._client.hmget(self.layout.erased_key(shard), digests))

    async def erased_count(self, shard: int) -> int:
        return int(await self._client.hlen(self.layout.erased_key(shard)))

    async def close(self) -> None:
        await self._client.aclose()  # type: ignore[attr-defined]  # the stubs lag redis-py
