"""Fixtures for the real local Kafka and Redis (`make services-up`), for any test directory.

Registered from tests/conftest.py (``pytest_plugins``), so tests/integration/ and the
Redis runs of the store contract suite (tests/stores/) share them. Nothing here mocks
Kafka or Redis; a test that uses these fixtures must be marked ``integration`` (the
tests/integration/ conftest marks its tests automatically, tests/stores/ marks its Redis
parameter), so ``pytest -m "not integration"`` needs no services.

Where the services are (the test run never reads TIERSTREAM_KAFKA_BOOTSTRAP or
TIERSTREAM_REDIS_URL, so that a shell configured for a real deployment cannot point
the tests, which delete topics and flush a database, at it):

* Kafka: ``TIERSTREAM_TEST_KAFKA_BOOTSTRAP``, else ``127.0.0.1:$TIERSTREAM_KAFKA_PORT``
  (default port 9092), as started by infra/services.sh.
* Redis: ``TIERSTREAM_TEST_REDIS_URL``, else
  ``redis://127.0.0.1:$TIERSTREAM_REDIS_PORT/15``: database 15 of the local server
  is the test database, flushed before and after each test using ``redis_client``
  (under pytest-xdist, worker gwN uses database 15 - N).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import redis

START_HINT = "start the local services with `make services-up` (bash infra/services.sh up)"


def _kafka_bootstrap() -> str:
    explicit = os.environ.get("TIERSTREAM_TEST_KAFKA_BOOTSTRAP")
    if explicit:
        return explicit
    return f"127.0.0.1:{os.environ.get('TIERSTREAM_KAFKA_PORT', '9092')}"


def _redis_url() -> str:
    explicit = os.environ.get("TIERSTREAM_TEST_REDIS_URL")
    if explicit:
        return _per_worker(explicit)
    return _per_worker(f"redis://127.0.0.1:{os.environ.get('TIERSTREAM_REDIS_PORT', '6379')}/15")


def _per_worker(url: str) -> str:
    """Under pytest-xdist, worker gwN uses the database N below the configured one (15, 14,
    ...): ``redis_client`` flushes its database, which must not be another worker's."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    base, _, database = url.rpartition("/")
    return f"{base}/{int(database) - int(worker[2:])}"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """host:port of a Kafka broker that answers metadata requests."""
    # Imported here: kafka-python's import is slow and noisy for runs that need no Kafka.
    from tests.integration.helpers import admin_client

    bootstrap = _kafka_bootstrap()
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"Kafka is not reachable at {bootstrap} ({exc}): {START_HINT}", pytrace=False)
    try:
        admin = admin_client(bootstrap)
        try:
            cluster = admin.describe_cluster()
        finally:
            admin.close()
    except Exception as exc:  # noqa: BLE001 - turned into a readable failure
        pytest.fail(
            f"Kafka at {bootstrap} does not answer metadata requests "
            f"({type(exc).__name__}: {exc}): {START_HINT}",
            pytrace=False,
        )
    if not cluster.get("brokers"):
        pytest.fail(f"Kafka at {bootstrap} lists no broker: {START_HINT}", pytrace=False)
    return bootstrap


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the test database (db 15 of the local Redis unless configured)."""
    url = _redis_url()
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis does not answer PING at {url} ({type(exc).__name__}: {exc}): {START_HINT}",
            pytrace=False,
        )
    return url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the test database, empty at the start of the test and flushed after it."""
    client = redis.Redis.from_url(redis_url, decode_responses=False)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A private local Redis Cluster (tests/redis_cluster.py), for the whole session.

    Started on first use with infra/services.sh in a directory of its own, and stopped at
    the end: the shared services are never touched. ``TIERSTREAM_TEST_REDIS_CLUSTER_URL``
    points the tests at a running cluster instead (tests that kill nodes then skip).
    """
    from tests.redis_cluster import LocalCluster, free_base_port  # noqa: PLC0415

    explicit = os.environ.get("TIERSTREAM_TEST_REDIS_CLUSTER_URL")
    if explicit:
        yield explicit
        return
    cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster"), free_base_port())
    try:
        cluster.up()
    except Exception as exc:  # noqa: BLE001 - turned into a readable failure
        output = getattr(exc, "stderr", b"") or b""
        cluster.down()
        pytest.fail(
            f"could not start a local Redis Cluster: {exc}\n{output.decode()}", pytrace=False
        )
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="session")
def redis_cluster_url(redis_cluster: Any) -> str:
    """``redis+cluster://`` URL of the test cluster."""
    return redis_cluster if isinstance(redis_cluster, str) else str(redis_cluster.url)
