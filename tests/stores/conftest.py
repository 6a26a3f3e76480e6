"""Every store implementation runs the same contract suite (tests/stores/test_contract.py)."""

from __future__ import annotations

import pytest

from tierstream.stores import MemoryStore

PARTITIONS = 4


def _memory(request):
    return MemoryStore(partitions=PARTITIONS)


def _redis(request):
    redis_url = request.getfixturevalue("redis_url")  # tests/services.py
    from tierstream.stores.redis import RedisStore  # noqa: PLC0415

    store = RedisStore(redis_url, partitions=PARTITIONS, namespace=f"t{id(request)}")
    store.wipe()
    request.addfinalizer(store.wipe)
    return store


BACKENDS = {"memory": _memory, "redis": _redis}


@pytest.fixture(
    params=[pytest.param("memory"), pytest.param("redis", marks=pytest.mark.integration)]
)
def store(request):
    try:
        factory = BACKENDS[request.param]
    except KeyError:  # pragma: no cover
        pytest.fail(f"unknown store {request.param}")
    return factory(request)
