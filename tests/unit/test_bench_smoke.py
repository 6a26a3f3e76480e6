"""The benchmark's service-free parts: the event mix, the replay measurement, the hot-path
profile, the inactivity rehearsal, the quix peer's per-event step and the aggregation/plot.
Keeps bench/ from rotting; asserts shapes and invariants, never wall-clock speeds."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bench import phases, run
from bench.consumers import fold_event
from bench.mix import PLACEHOLDER, MixSpec, generate, stamp
from bench.profile import hot_path
from bench.report import markdown_table, plot
from bench.run import _aggregate, main, parse_args
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


class DictState:
    """quix-streams' per-key State, reduced to what ``fold_event`` uses (its values go
    through JSON there: tuples come back as lists)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key: str, default: object = None) -> object:
        return json.loads(self.values[key]) if key in self.values else default

    def set(self, key: str, value: object) -> None:
        self.values[key] = json.dumps(value)


def test_peer_step_keeps_exact_purchase_aggregates(mix):
    states: dict[str, DictState] = {}
    outputs = [
        fold_event(json.loads(event_json(e)), states.setdefault(e.customer_id, DictState()))
        for e in mix.events
    ]
    assert len(outputs) == len(mix.events)  # one message per event, engagements included

    expected: dict[str, tuple[int, Decimal, datetime | None]] = {}
    for e in mix.events:
        count, net, last = expected.get(e.customer_id, (0, Decimal(0), None))
        if isinstance(e, PurchaseEvent) and e.kind == "refund":
            net -= e.amount
        elif isinstance(e, PurchaseEvent):
            count, net = count + 1, net + e.amount
            last = e.occurred_at if last is None else max(last, e.occurred_at)
        expected[e.customer_id] = (count, net, last)
    last_output = {out["customer_id"]: out for out in outputs}
    for customer, (count, net, last) in expected.items():
        out = last_output[customer]
        assert out["purchases"] == count
        assert Decimal(out["net_amount"]) == net
        got = out["last_purchase_at"]
        assert (datetime.fromisoformat(got) if got else None) == last
    # a JSON number is taken as exactly as a string
    number = fold_event(
        {"event_id": "e", "customer_id": "c", "occurred_at": END.isoformat(), "amount": 0.1},
        DictState(),
    )
    assert number["net_amount"] == "0.1"


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
        "peer": [{"eps": 4_000.0, "steady_eps": 8_000.0, "progress": [[0, 0], [3, 1000]]}] * 3,
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
        "peer_eps",
        "worker_eps",
        "latency_p50_ms",
        "latency_p99_ms",
        "latency_offered_eps",
        "inactivity_lag_p99_ms",
        "redis_bytes_per_customer",
        "replay_eps",
        "machine",
    ]
    assert latest["worker_eps"] == 2_500.0
    assert summary["worker_eps"] == {"median": 2_500.0, "min": 2_000.0, "max": 3_000.0, "n": 3}
    assert latest["peer_eps"] == 4_000.0
    assert latest["latency_offered_eps"] == 1_000.0
    assert summary["worker_vs_naive"]["median"] == pytest.approx(2.5)
    assert summary["worker_vs_peer"] == {"median": 0.625, "min": 0.5, "max": 0.75, "n": 3}
    assert summary["worker_vs_peer_steady"]["median"] == pytest.approx(0.375)
    assert detail["targets"]["worker_vs_naive"]["met"] is False
    assert detail["targets"]["worker_vs_peer"] == {
        "value": 0.625,
        "target": ">= 1",
        "of": "worker_eps / peer_eps",
        "met": False,
    }
    assert detail["targets"]["redis_bytes_per_customer"]["met"] is True
    table = markdown_table(latest, detail)
    assert "| worker_eps / raw_consume_eps | 0.05 (0.04–0.06) | ≥ 0.25 | no |" in table
    assert "| worker_eps / naive_eps | 2.50 (2.00–3.00) | ≥ 10 | no |" in table
    assert "| replay_eps (CDNOW, in-process) | 5,000 | ≥ 75,000 | no |" in table
    assert "| worker_eps / peer_eps | 0.62 (0.50–0.75) | ≥ 1 | no |" in table
    peer_row = "| peer_eps (quix-streams, RocksDB state + changelog, 1 output/event) | 4,000 ("
    assert peer_row in table
    assert "| latency p99, ms (at 1,000 events/s) | 250 | ≤ 100 at 5,000/s | no |" in table
    plot(latest, detail, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").stat().st_size > 10_000


def test_quick_options():
    args = parse_args(["--quick"])
    assert (args.events, args.repeats, args.latency_seconds) == (20_000, 1, 8.0)
    full = parse_args([])
    assert full.repeats == 3 and full.events == 100_000
    assert full.rate == 5_000.0  # the latency target's rate, offered as is
    assert "peer" in full.phases
    with pytest.raises(SystemExit):
        parse_args(["--phases", "nonsense"])


def test_without_quixstreams_the_peer_is_skipped_saying_so(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "peer_python", lambda: None)
    argv = ["--phases", "peer", "--events", "1000", "--out", str(tmp_path), "--plot", ""]
    assert main(argv) == 0
    detail = json.loads((tmp_path / "latest-detail.json").read_text())
    assert "quixstreams is not installed" in detail["skipped"]["peer"]
    assert detail["errors"] == []
    assert json.loads((tmp_path / "latest.json").read_text())["peer_eps"] is None


def test_the_bench_command_finds_the_harness_in_the_checkout():
    from tierstream.bench_checkout import bench_main

    assert bench_main() is main  # bench/ is beside the package, not inside the wheel


class _NoBench:
    """An import system without bench/, as an installed wheel has it."""

    def find_spec(self, name, path=None, target=None):
        if name == "bench" or name.startswith("bench."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def test_without_a_checkout_the_bench_command_says_so_in_one_line(tmp_path, monkeypatch):
    import sys

    from typer.testing import CliRunner

    from tierstream import bench_checkout
    from tierstream.cli import app

    for name in [n for n in sys.modules if n == "bench" or n.startswith("bench.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NoBench(), *sys.meta_path])
    monkeypatch.setattr(bench_checkout, "CHECKOUT", tmp_path)  # no bench/ beside it
    assert bench_checkout.bench_main() is None
    result = CliRunner().invoke(app, ["bench", "--quick"])
    assert result.exit_code == 2
    assert "runs from a checkout" in result.output and "Traceback" not in result.output
