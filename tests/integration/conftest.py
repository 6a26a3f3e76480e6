"""Integration-only fixtures and the automatic ``integration`` marker.

The service fixtures (``kafka_bootstrap``, ``redis_url``, ``redis_client``) live in
tests/services.py, registered from tests/conftest.py, so that other test directories
(the Redis runs of the store contract suite) can use them too.

Every test under tests/integration/ is marked ``integration`` automatically, so
``pytest -m "not integration"`` skips them all.
"""

from __future__ import annotations

import re
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scoring.events import InputEvent
from tests.cdnow import cdnow_history
from tests.integration.helpers import FreshTopics
from tests.integration.pipeline import Pipeline
from tests.reference import load_cdnow

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


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


# Session-wide: the sort (the parse is cached in tests/cdnow.py) and the reference frame's
# read took about 0.5 s in each of the 13 modules using them. The events are frozen and no
# test changes the list or the frame.
@pytest.fixture(scope="session")
def cdnow_events() -> list[InputEvent]:
    """CDNOW's 69,659 purchases as events, in event-time order."""
    events = list(cdnow_history())
    events.sort(key=lambda e: e.occurred_at)
    return events


@pytest.fixture(scope="session")
def cdnow_frame() -> Any:
    return load_cdnow()


@pytest.fixture
def make_pipeline(
    kafka_bootstrap: str,
    redis_url: str,
    fresh_topics: FreshTopics,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> Iterator[Callable[..., Pipeline]]:
    """Isolated deployments (fresh topics, namespace, group), stopped and wiped after."""
    made: list[Pipeline] = []

    def make(**options: Any) -> Pipeline:
        pipeline = Pipeline(
            kafka_bootstrap, redis_url, fresh_topics, unique_name, tmp_path, **options
        )
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        # The test is over and its namespace is wiped next: SIGKILL, not SIGTERM, spares
        # a graceful shutdown (about 1.5 s a test) nobody checks here. The SIGTERM path
        # is tested where it matters (test_repartition, test_learning_kafka).
        pipeline.stop_all(signal.SIGKILL)
        pipeline.store.wipe()
        pipeline.store.close()
