"""Every store implementation runs the same contract suite (tests/stores/test_contract.py)."""

from __future__ import annotations

import itertools

import pytest

from tierstream.stores import MemoryStore

PARTITIONS = 4
_NAMESPACES = itertools.count()


def _memory(request, **options):
    return MemoryStore(partitions=PARTITIONS, **options)


def _redis(request, **options):
    redis_url = request.getfixturevalue("redis_url")  # tests/services.py
    from tierstream.stores.redis import RedisStore  # noqa: PLC0415

    namespace = f"t{id(request)}n{next(_NAMESPACES)}"
    store = RedisStore(redis_url, partitions=PARTITIONS, namespace=namespace, **options)
    store.wipe()
    request.addfinalizer(store.wipe)
    request.addfinalizer(store.close)
    return store


def _redis_cluster(request, **options):
    # The same store on a private 3-master Redis Cluster (tests/services.py): every
    # atomic step must keep to one hash slot there.
    from tierstream.stores.redis import RedisStore  # noqa: PLC0415

    url = request.getfixturevalue("redis_cluster_url")
    namespace = f"t{id(request)}n{next(_NAMESPACES)}"
    store = RedisStore(url, partitions=PARTITIONS, namespace=namespace, **options)
    store.wipe()
    request.addfinalizer(store.wipe)
    request.addfinalizer(store.close)
    return store


BACKENDS = {"memory": _memory, "redis": _redis, "redis-cluster": _redis_cluster}


@pytest.fixture(
    params=[
        pytest.param("memory"),
        pytest.param("redis", marks=pytest.mark.integration),
        pytest.param("redis-cluster", marks=pytest.mark.integration),
    ]
)
def make_store(request):
    """``make_store(**options)``: a fresh store of this backend built with those options."""
    try:
        factory = BACKENDS[request.param]
    except KeyError:  # pragma: no cover
        pytest.fail(f"unknown store {request.param}")
    return lambda **options: factory(request, **options)


@pytest.fixture
def store(make_store):
    return make_store()
