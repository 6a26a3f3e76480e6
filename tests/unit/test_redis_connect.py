"""Choosing the Redis client by URL, and what its Cluster-only errors mean to the worker."""

from __future__ import annotations

import pytest
import redis
from redis.exceptions import RedisClusterException

from streams.failures import Outcome, classify
from tierstream.stores.redis_connect import LazyCluster, cluster_url, seeds, sync_client


def test_cluster_urls_are_named_by_their_scheme() -> None:
    assert cluster_url("redis+cluster://10.0.0.1:7000") == "redis://10.0.0.1:7000"
    assert cluster_url("REDISS+CLUSTER://u:p@h:7000?ssl_ca_certs=/ca") == (
        "rediss://u:p@h:7000?ssl_ca_certs=/ca"
    )
    assert cluster_url("redis://127.0.0.1:6379/0") is None
    assert cluster_url("rediss://h:6380") is None
    assert isinstance(sync_client("redis://127.0.0.1:6379/0"), redis.Redis)


def test_several_seed_nodes_may_be_named() -> None:
    assert seeds("redis://h1:7000") == ("redis://h1:7000", [])
    assert seeds("rediss://u:p%40ss@h1:7000,h2:7001,h3/0?ssl_ca_certs=/ca") == (
        "rediss://u:p%40ss@h1:7000/0?ssl_ca_certs=/ca",
        [("h2", 7001), ("h3", 6379)],
    )
    assert seeds("redis://h1:7000,10.0.0.2:7000?x=1") == (
        "redis://h1:7000?x=1",
        [("10.0.0.2", 7000)],
    )


def test_a_cluster_client_connects_on_first_use_and_says_connection_error() -> None:
    # Nothing listens on port 1: building the store must not fail, using it must fail
    # with a ConnectionError (a RedisError every caller handles), not RedisClusterException.
    client = sync_client("redis+cluster://127.0.0.1:1", socket_connect_timeout=0.5)
    assert isinstance(client, LazyCluster)
    script = client.register_script("return 1")
    with pytest.raises(redis.ConnectionError, match="cannot be connected"):
        client.get("key")
    with pytest.raises(redis.ConnectionError):
        script(keys=["k"])
    client.close()


def test_no_cluster_node_answering_is_transient_a_cross_slot_call_is_not() -> None:
    unreachable = RedisClusterException("Redis Cluster cannot be connected. Please provide ...")
    assert classify(unreachable) is Outcome.TRANSIENT
    assert classify(RedisClusterException("Keys in request don't hash to the same slot")) is (
        Outcome.FATAL
    )
    assert classify(redis.exceptions.ClusterDownError("CLUSTERDOWN")) is Outcome.TRANSIENT
    assert classify(redis.exceptions.TryAgainError("TRYAGAIN")) is Outcome.TRANSIENT
    # Redirections (ASK, MOVED, TRYAGAIN) exhausted within one call: a slot in migration.
    assert classify(redis.exceptions.ClusterError("TTL exhausted.")) is Outcome.TRANSIENT
