"""Helpers for the integration tests (real Kafka and Redis, no mocks)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import CoordinatorLoadInProgressError, NotCoordinatorError

from tierstream.topics import ensure_topics


def admin_client(bootstrap: str, **options: Any) -> KafkaAdminClient:
    """A kafka-python admin client that gives up quickly when nothing answers."""
    import kafka

    if int(kafka.__version__.split(".")[0]) >= 3:
        options.setdefault("bootstrap_timeout_ms", 5000)
    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="tierstream-tests",
        request_timeout_ms=10_000,
        **options,
    )


def committed_offsets(
    bootstrap: str, group_id: str, timeout_s: float = 60.0
) -> dict[tuple[str, int], int]:
    """(topic, partition) -> committed offset of a consumer group (kafka-python 2 or 3).

    A broker that has just (re)started answers "not the coordinator" (or "loading") until
    it has read the group's offsets back from __consumer_offsets: that is asked again
    until ``timeout_s``, as any Kafka client does."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return _committed_offsets(bootstrap, group_id)
        except (NotCoordinatorError, CoordinatorLoadInProgressError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _committed_offsets(bootstrap: str, group_id: str) -> dict[tuple[str, int], int]:
    admin = admin_client(bootstrap)
    try:
        if hasattr(admin, "list_group_offsets"):  # kafka-python >= 3
            offsets = admin.list_group_offsets(group_id).get(group_id, {})
        else:  # kafka-python 2.x
            offsets = admin.list_consumer_group_offsets(group_id)
    finally:
        admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}


def delete_groups(bootstrap: str, group_ids: list[str]) -> None:
    """Best-effort removal of consumer groups a test created."""
    if not group_ids:
        return
    admin = admin_client(bootstrap)
    try:
        admin.delete_groups(group_ids)
    except Exception:  # noqa: BLE001 - cleanup only; an empty group expires anyway
        pass
    finally:
        admin.close()


class FreshTopics:
    """Creates uniquely named topics for one test and deletes them afterwards.

    ``fresh_topics({"in": 3, "out": 1})`` returns ``{"in": "<unique>", "out": "<unique>"}``
    once every partition has a leader. ``fresh_topics.track(name)`` also deletes a topic
    created by someone else during the test (for example one declared by a Faust app).
    """

    def __init__(self, bootstrap: str, make_name: Callable[[str], str]) -> None:
        self.bootstrap = bootstrap
        self._make_name = make_name
        self.created: list[str] = []

    def __call__(self, partitions: dict[str, int]) -> dict[str, str]:
        names = {logical: self._make_name(logical) for logical in partitions}
        ensure_topics(self.bootstrap, {names[k]: count for k, count in partitions.items()})
        self.created.extend(names.values())
        return names

    def track(self, name: str) -> None:
        self.created.append(name)

    def cleanup(self) -> None:
        if not self.created:
            return
        admin = admin_client(self.bootstrap)
        try:
            existing = set(admin.list_topics())
            doomed = [name for name in self.created if name in existing]
            if doomed:
                admin.delete_topics(doomed, timeout_ms=30_000)
        finally:
            admin.close()
