"""The benchmark's service-free parts: the event mix, the replay measurement, the hot-path
profile, the inactivity rehearsal and the aggregation/plot. Keeps bench/ from rotting;
asserts shapes and invariants, never wall-clock speeds."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bench import phases
from bench.mix import PLACEHOLDER, MixSpec, generate, stamp
from bench.profile import hot_path
from bench.report import markdown_table, plot
from bench.run import _aggregate, parse_args
from scoring.engine import Scorer
from scoring.events import EngagementEvent, PurchaseEvent
from streams.producer import event_json
from tierstream.settings import load_scoring_config

END = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SPEC = MixSpec(events=6_000, customers=5_000, seed=7)


@pytest.fixture(scope="module")
def mix():
    return generate(SPEC, END)


def test_mix_is_seeded_and_shaped_like_the_spec(mix):
    again = generate(SPEC, END)
    assert [event_json(e) for e in again.events] == [event_json(e) for e in mix.events]
    assert len(mix.events) == SPEC.events

    stats = mix.stats()
    share = stats["purchases_topic"] / stats["events"]
    assert 0.27 < share < 0.33
    assert stats["by_kind"]["refund"] > 0
    assert set(stats["by_kind"]) == {
        "purchase",
        "refund",
        "page_view",
        "app_session",
        "email_open",
        "email_click",
    }
    # duplicates: same event id delivered twice
    assert 0 < stats["events"] - stats["unique_event_ids"] <= 0.01 * stats["events"]
    # heavy tail: the busiest customer is far busier than the typical one
    assert stats["events_per_customer_max"] >= 20 * stats["events_per_customer_median"]


def test_mix_timestamps_fit_a_wall_clock_worker(mix):
    start = END - timedelta(days=SPEC.days)
    for event in mix.events:
        assert start <= event.occurred_at <= END - timedelta(seconds=59)
        assert event.occurred_at.tzinfo is not None
    amounts = [e.amount for e in mix.events if isinstance(e, PurchaseEvent)]
    assert min(amounts) > Decimal(0)
    assert statistics.median(amounts) < statistics.mean(amounts)  # right-skewed


def test_mix_serializes_to_valid_keyed_events(mix):
    for event in mix.events[:500]:
        raw = event_json(event)
        kind = PurchaseEvent if isinstance(event, PurchaseEvent) else EngagementEvent
        assert kind.model_validate_json(raw) == event


def test_refunds_follow_their_purchase(mix):
    purchases = {
        e.order_id: e for e in mix.events if isinstance(e, PurchaseEvent) and e.kind == "purchase"
    }
    refunds = [e for e in mix.events if isinstance(e, PurchaseEvent) and e.kind == "refund"]
    assert refunds
    for refund in refunds:
        source = purchases[refund.order_id]
        assert refund.customer_id == source.customer_id
        assert refund.occurred_at >= source.occurred_at
        assert refund.amount <= source.amount


def test_placeholder_events_are_dated_at_send_time():
    live = generate(MixSpec(events=1_000, customers=500, seed=3, days=10 / 86_400), None)
    assert all(e.occurred_at == PLACEHOLDER for e in live.events)
    moment = datetime(2026, 3, 1, 23, 59, 58, 123456, tzinfo=UTC)
    raw = stamp(event_json(live.events[0]), moment)
    assert json.loads(raw)["occurred_at"] == moment.isoformat()


def test_replay_measurement():
    result = phases.replay_speed(limit=3_000)
    assert result["events"] == 3_000
    assert result["seconds"] > 0 and result["eps"] > 0
    assert result["changes"] > 0


def test_inactivity_rehearsal_puts_customers_on_a_cut_at_midnight():
    midnight = datetime(2026, 3, 2, tzinfo=UTC)
    events, crossing = phases.inactivity_mix(midnight, 200, seed=11)
    assert set(Counter(crossing.values())) == {31, 91}
    scorer = Scorer(load_scoring_config(None))
    before = midnight - timedelta(seconds=20)
    expected = phases.expected_inactivity(scorer, events, before, midnight)
    assert len(expected) > 100  # most customers' tier or segment moves at midnight
    assert phases.next_midnight(before) == midnight


def test_hot_path_profile_in_memory(mix):
    out = hot_path(mix.events[:1_500], None, None)
    assert out["memory"]["events"] == 1_500
    assert out["memory"]["changes"] > 0
    assert {"parse", "apply", "encode", "next_rescore_at"} <= set(out["stages"])
    names = " ".join(row["function"] for row in out["profile"]["inclusive"])
    assert "process" in names


def test_steady_rate_and_summaries():
    samples = [(float(t), min(1000, 100 * t)) for t in range(0, 12)]
    assert phases.steady_rate(samples, 1000) == pytest.approx(100.0)
    assert phases.summarize([3.0, None, 1.0, 2.0]) == {
        "median": 2.0,
        "min": 1.0,
        "max": 3.0,
        "n": 3,
    }


def test_results_files_have_exactly_the_agreed_keys_and_plot(tmp_path):
    def worker(eps):
        return {
            "eps": eps,
            "steady_eps": eps * 1.2,
            "startup_s": 2.0,
            "seconds": 10.0,
            "redis_bytes_per_customer": 300.0,
            "redis_memory_usage_per_customer": 280.0,
            "progress": [[0, 0], [5, 500], [10, 1000]],
        }

    repeats = {
        "raw": [{"eps": 50_000.0, "steady_eps": 60_000.0, "progress": [[0, 0], [1, 1000]]}] * 3,
        "naive": [{"eps": 1_000.0, "steady_eps": 1_100.0}] * 3,
        "worker": [worker(2_000.0), worker(2_500.0), worker(3_000.0)],
        "latency": [
            {
                "latency_p50_ms": 90.0,
                "latency_p99_ms": 250.0,
                "inactivity_lag_p99_ms": 450.0,
                "offered_rate": 1_000.0,
                "kept_up": True,
                "latency_histogram_ms": {"edges": [1.0, 10.0, 100.0, 1000.0], "counts": [1, 5, 2]},
            }
        ],
        "replay": [{"eps": 5_000.0}],
    }
    detail = {"mix": {"events": 1000}, "machine": {"cores": 2, "cpu": "test"}, "mode": "test"}
    summary, latest = _aggregate(repeats, detail)
    detail["summary"] = summary
    assert list(latest) == [
        "events",
        "raw_consume_eps",
        "naive_eps",
        "worker_eps",
        "latency_p50_ms",
        "latency_p99_ms",
        "inactivity_lag_p99_ms",
        "redis_bytes_per_customer",
        "replay_eps",
        "machine",
    ]
    assert latest["worker_eps"] == 2_500.0
    assert summary["worker_eps"] == {"median": 2_500.0, "min": 2_000.0, "max": 3_000.0, "n": 3}
    assert summary["worker_vs_naive"]["median"] == pytest.approx(2.5)
    assert detail["targets"]["worker_vs_naive"]["met"] is False
    assert detail["targets"]["redis_bytes_per_customer"]["met"] is True
    assert "| worker_eps / naive_eps | 2.50 (2.00–3.00) | ≥ 10 | no |" in markdown_table(
        latest, detail
    )
    plot(latest, detail, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").stat().st_size > 10_000


def test_quick_options():
    args = parse_args(["--quick"])
    assert (args.events, args.repeats, args.latency_seconds) == (20_000, 1, 8.0)
    full = parse_args([])
    assert full.repeats == 3 and full.events == 100_000
    with pytest.raises(SystemExit):
        parse_args(["--phases", "nonsense"])
