"""Fixtures for tests against the real local Kafka and Redis (`make services-up`).

Nothing here mocks Kafka or Redis. Every test under tests/integration/ is marked
``integration`` automatically, so ``pytest -m "not integration"`` skips them all.

Where the services are (the test run never reads TIERSTREAM_KAFKA_BOOTSTRAP or
TIERSTREAM_REDIS_URL, so that a shell configured for a real deployment cannot point
the tests, which delete topics and flush a database, at it):

* Kafka: ``TIERSTREAM_TEST_KAFKA_BOOTSTRAP``, else ``127.0.0.1:$TIERSTREAM_KAFKA_PORT``
  (default port 9092), as started by infra/services.sh.
* Redis: ``TIERSTREAM_TEST_REDIS_URL``, else
  ``redis://127.0.0.1:$TIERSTREAM_REDIS_PORT/15``: database 15 of the local server
  is the test database, flushed before and after each test using ``redis_client``.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.helpers import FreshTopics, admin_client

HERE = Path(__file__).resolve().parent
START_HINT = "start the local services with `make services-up` (bash infra/services.sh up)"


def _kafka_bootstrap() -> str:
    explicit = os.environ.get("TIERSTREAM_TEST_KAFKA_BOOTSTRAP")
    if explicit:
        return explicit
    return f"127.0.0.1:{os.environ.get('TIERSTREAM_KAFKA_PORT', '9092')}"


def _redis_url() -> str:
    explicit = os.environ.get("TIERSTREAM_TEST_REDIS_URL")
    if explicit:
        return explicit
    return f"redis://127.0.0.1:{os.environ.get('TIERSTREAM_REDIS_PORT', '6379')}/15"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """host:port of a Kafka broker that answers metadata requests."""
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


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:limit] or "t"


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """unique_name("group") -> "group-<test name>-<random>", valid as topic or group id."""

    def make(prefix: str) -> str:
        return f"{_slug(prefix, 30)}-{_slug(request.node.name, 60)}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def fresh_topics(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> Iterator[FreshTopics]:
    topics = FreshTopics(kafka_bootstrap, unique_name)
    try:
        yield topics
    finally:
        topics.cleanup()
