"""Redis clients for one URL: a single server, or a Redis Cluster.

``TIERSTREAM_REDIS_URL`` names a Cluster by its scheme: ``redis+cluster://host:port`` (or
``rediss+cluster://`` for TLS), with one or more nodes as seeds, comma-separated
(``redis+cluster://h1:7000,h2:7000,h3:7000``: a client started while one of them is down
asks another); everything else is read as for ``redis://`` (password, TLS options). The
clients are then redis-py's Cluster clients, which follow MOVED and ASK redirections (a
reshard), refresh the slot map after a failover, and route each command to the node
holding its key's slot. Every key of one shard shares the hash tag ``{ns:p<p>}``, so each
atomic step (one Lua script, one MULTI) lands on one slot, as Cluster requires. What the
client does not ride out itself (CLUSTERDOWN while a master is replaced, TRYAGAIN during a
slot migration, a dropped connection) reaches the caller as a transient error: the worker
waits and redoes its step (streams/failures.py), the API and CLI retry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import EqualJitterBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

# When a node is unreachable or the cluster is down (a master being replaced), the Cluster
# client refreshes its slot map and retries a call this often (backoff 50 ms doubling to
# 1 s, half of it jitter) before the error reaches the caller, whose own retry (the
# worker's backoff) takes over. MOVED and ASK are followed without counting against it.
CLUSTER_RETRIES = 3
CLUSTER_BACKOFF = EqualJitterBackoff(cap=1.0, base=0.05)


def cluster_url(url: str) -> str | None:
    """The plain ``redis://`` URL of a ``redis+cluster://`` one; None for a single server."""
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower()) if sep else None
    return f"{plain}://{rest}" if plain else None


def seeds(plain: str) -> tuple[str, list[tuple[str, int]]]:
    """(the URL with its first node only, the other seed nodes) of a plain cluster URL
    whose host part lists several ``host:port`` seeds, comma-separated."""
    scheme, _, rest = plain.partition("://")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, at, hosts = netloc.rpartition("@")
    first, *others = hosts.split(",")
    extra = []
    for node in others:
        host, _, port = node.strip().rpartition(":")
        extra.append((host, int(port)) if host else (node.strip(), 6379))
    return f"{scheme}://{userinfo}{at}{first}{tail}", extra


def sync_client(url: str, **options: Any) -> Any:
    """A blocking client: ``redis.Redis``, or ``RedisCluster`` for a cluster URL."""
    plain = cluster_url(url)
    if plain is None:
        return redis.Redis.from_url(url, **options)
    options.setdefault("retry", Retry(CLUSTER_BACKOFF, CLUSTER_RETRIES))
    first, others = seeds(plain)
    if others:
        options["startup_nodes"] = [ClusterNode(host, port) for host, port in others]
    return LazyCluster(lambda: RedisCluster.from_url(first, **options))


def async_client(url: str, **options: Any) -> Any:
    """An asyncio client: ``redis.asyncio.Redis``, or its ``RedisCluster`` for a cluster URL."""
    plain = cluster_url(url)
    if plain is None:
        return aioredis.Redis.from_url(url, **options)
    options.pop("retry_on_timeout", None)  # not a Cluster option: ``retry`` covers it
    options.setdefault("retry", AsyncRetry(CLUSTER_BACKOFF, CLUSTER_RETRIES))
    first, others = seeds(plain)
    if others:
        options["startup_nodes"] = [AsyncClusterNode(host, port) for host, port in others]
    return AsyncRedisCluster.from_url(first, **options)


class LazyCluster:
    """A blocking ``RedisCluster`` made on its first use.

    redis-py's Cluster client reads the slot map in its constructor and raises
    ``RedisClusterException`` (not a ``RedisError``) when no node answers. Built on first
    use instead, a store can be created while the cluster is down (a worker then starts
    and waits, as with a single Redis), and "no node answers" reaches the caller as the
    ``ConnectionError`` it is.
    """

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._client: Any = None
        self._lock = threading.Lock()

    def connected(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    try:
                        self._client = self._factory()
                    except RedisClusterException as exc:
                        raise redis.ConnectionError(str(exc)) from exc
        return self._client

    def register_script(self, script: str) -> _LazyScript:
        return _LazyScript(self, script)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connected(), name)


class _LazyScript:
    """``register_script`` of a ``LazyCluster``: the script object is made on first call."""

    def __init__(self, owner: LazyCluster, source: str) -> None:
        self._owner = owner
        self._source = source
        self._script: Any = None

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        if self._script is None:
            self._script = self._owner.connected().register_script(self._source)
        return self._script(keys=keys, args=args)
