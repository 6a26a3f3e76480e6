"""The worker's own metrics: what users of Kafka stream processors expect on /metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from prometheus_client import generate_latest

from streams.metrics import Metrics


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the exposition")


def change(customer_id: str, cause: str, occurred_at: datetime) -> SimpleNamespace:
    return SimpleNamespace(customer_id=customer_id, cause=cause, occurred_at=occurred_at)


def test_process_cpu_and_memory_are_exposed() -> None:
    text = generate_latest(Metrics().registry).decode()
    assert sample(text, "process_resident_memory_bytes") > 0
    assert sample(text, "process_cpu_seconds_total") >= 0


def test_timer_lateness_counts_only_time_driven_changes() -> None:
    metrics = Metrics()
    now = datetime(2026, 1, 2, 0, 0, 3, tzinfo=UTC)
    due = now - timedelta(seconds=3)
    metrics.observe_timer_lateness(
        [change("a", "inactivity", due), change("b", "purchase", due)],
        now,  # type: ignore[list-item]
    )
    text = generate_latest(metrics.registry).decode()
    assert sample(text, "tierstream_timer_lateness_seconds_count") == 1
    assert sample(text, "tierstream_timer_lateness_seconds_sum") == 3
    assert 'tierstream_timer_lateness_seconds_bucket{le="2.0"} 0.0' in text
    assert 'tierstream_timer_lateness_seconds_bucket{le="5.0"} 1.0' in text


def test_event_to_change_latency_uses_the_customers_record_time() -> None:
    metrics = Metrics()
    changes = [
        change("a", "purchase", datetime.now(UTC)),
        change("z", "purchase", datetime.now(UTC)),
    ]
    metrics.observe_change_latency(changes, {"a": 100.0}, now=100.25)  # type: ignore[arg-type]
    text = generate_latest(metrics.registry).decode()
    assert sample(text, "tierstream_event_to_change_seconds_count") == 1  # z: no record time
    assert sample(text, "tierstream_event_to_change_seconds_sum") == 0.25


def test_outbox_depth_and_owned_shards_are_read_at_scrape() -> None:
    metrics = Metrics()
    depths = {0: 3, 2: 0}
    metrics.watch_shards(lambda: depths)
    text = generate_latest(metrics.registry).decode()
    assert sample(text, "tierstream_owned_shards") == 2
    assert 'tierstream_outbox_depth{shard="0"} 3.0' in text
    depths.pop(0)
    text = generate_latest(metrics.registry).decode()
    assert sample(text, "tierstream_owned_shards") == 1 and 'shard="0"' not in text


def test_commit_and_rebalance_metrics_are_declared() -> None:
    text = generate_latest(Metrics().registry).decode()
    for name in (
        "tierstream_kafka_commit_seconds_count",
        "tierstream_kafka_commit_failures_total",
        "tierstream_redis_commit_seconds_count",
        "tierstream_rebalances_total",
    ):
        assert sample(text, name) == 0, name
