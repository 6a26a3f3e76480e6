"""The worker's Prometheus metrics and the store totals, rendered and parsed back."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from scoring.engine import Change, change_event_id
from scoring.events import DeadLetter
from streams.metrics import Metrics, tally_metrics
from streams.processor import StepResult
from tierstream.stores import Batch, record_changes

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def change(version: int, previous: str | None, new: str, cause: str = "purchase") -> Change:
    return Change(
        event_id=change_event_id("c1", version),
        customer_id="c1",
        version=version,
        previous_tier=previous,
        new_tier=new,
        previous_segment=None,
        new_segment="New",
        cause=cause,  # type: ignore[arg-type]
        reason="test",
        recency_days=0,
        frequency=1,
        monetary=Decimal(5),
        r=5,
        f=1,
        m=1,
        occurred_at=T0,
    )


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_observe_step_counts_outcomes_changes_and_sizes():
    metrics = Metrics()
    result = StepResult()
    result.counts.update({"applied": 3, "duplicate": 1, "already_applied": 2})
    result.counts["dead_letter:bad_json"] += 1
    result.dead_letters.append(
        DeadLetter(
            source_topic="purchases",
            source_partition=0,
            source_offset=9,
            key_base64=None,
            payload_base64="",
            error_kind="bad_json",
            error="x",
            received_at=T0,
        )
    )
    result.changes += [change(1, None, "C"), change(2, "C", "B"), change(3, "B", "B")]
    metrics.observe_step(2, 0.01, result)
    timer = StepResult()
    timer.counts["rescored"] = 4
    timer.changes.append(change(4, "B", "C", "inactivity"))
    metrics.observe_step(2, 0.002, timer)
    metrics.observe_step(2, 0.001, StepResult())  # nothing due: not a batch
    metrics.observe_publish(4)
    got = samples(metrics.registry)
    assert got[("tierstream_events_total", (("outcome", "applied"),))] == 3
    assert got[("tierstream_events_total", (("outcome", "already_applied"),))] == 2
    assert got[("tierstream_events_total", (("outcome", "dead_letter"),))] == 1
    assert (
        got[("tierstream_dead_letters_total", (("kind", "bad_json"), ("topic", "purchases")))] == 1
    )
    assert got[("tierstream_tier_changes_total", (("cause", "purchase"),))] == 3
    assert got[("tierstream_tier_changes_total", (("cause", "inactivity"),))] == 1
    flows = {k[1]: v for k, v in got.items() if k[0] == "tierstream_tier_flows_total"}
    assert flows == {
        (("from_tier", "none"), ("to_tier", "C")): 1,
        (("from_tier", "C"), ("to_tier", "B")): 1,
        (("from_tier", "B"), ("to_tier", "C")): 1,
    }
    # 3 applied + 1 duplicate + 2 already applied + 1 dead letter: the step's 7 messages
    assert got[("tierstream_batch_size_sum", (("kind", "input"),))] == 7
    assert got[("tierstream_batch_size_sum", (("kind", "timer"),))] == 4
    assert got[("tierstream_step_seconds_count", (("kind", "input"),))] == 1
    assert got[("tierstream_rescored_total", ())] == 4
    assert got[("tierstream_published_total", ())] == 4
    assert ("tierstream_last_step_timestamp_seconds", (("shard", "2"),)) in got


def test_store_totals_render_as_counters():
    batch = Batch()
    record_changes(
        batch,
        [change(1, None, "C"), change(2, "C", "B", "inactivity")],
        {"applied": 5, "rescored": 2, "dead_letter:bad_json": 1, "not_owned": 9},
    )
    assert "not_owned" not in batch.tallies  # per-process noise stays out of the totals

    class Totals(Collector):
        def collect(self):
            return tally_metrics(batch.tallies)

    registry = CollectorRegistry()
    registry.register(Totals())
    got = samples(registry)
    assert got[("tierstream_store_events_total", (("outcome", "applied"),))] == 5
    assert got[("tierstream_store_rescored_total", ())] == 2
    assert got[("tierstream_store_dead_letters_total", (("kind", "bad_json"),))] == 1
    assert got[("tierstream_store_tier_changes_total", (("cause", "inactivity"),))] == 1
    flow = ("tierstream_store_tier_flows_total", (("from_tier", "none"), ("to_tier", "C")))
    assert got[flow] == 1
