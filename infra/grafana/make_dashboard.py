"""Writes dashboards/tierstream.json, the Grafana dashboard the compose stack provisions.

The panels are listed here, readable, instead of being edited as several hundred lines
of JSON; run ``python infra/grafana/make_dashboard.py`` after changing them (a test checks
that the JSON is current and that every metric it queries exists).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards" / "tierstream.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}

# (title, unit, [(legend, expression)], description)
PANELS: list[tuple[str, str, list[tuple[str, str]], str]] = [
    (
        "Consumer lag per partition",
        "short",
        [("{{topic}} p{{partition}}", "max by (topic, partition) (tierstream_consumer_lag)")],
        "Input messages not yet applied: Kafka end offset minus the offset Redis holds.",
    ),
    (
        "Throughput (input messages/s by outcome)",
        "ops",
        [("{{outcome}}", "sum by (outcome) (rate(tierstream_events_total[1m]))")],
        "applied, duplicate, outside_window, already_applied (redelivered), dead_letter.",
    ),
    (
        "Tier changes/s by cause",
        "ops",
        [("{{cause}}", "sum by (cause) (rate(tierstream_tier_changes_total[1m]))")],
        "purchase, refund, engagement, inactivity (time-driven), threshold_update, "
        "model_update, config_update, erasure.",
    ),
    (
        "Event-to-change latency",
        "s",
        [
            (
                f"p{q}",
                f"histogram_quantile(0.{q}, sum by (le) "
                "(rate(tierstream_event_to_change_seconds_bucket[5m])))",
            )
            for q in (50, 99)
        ],
        "From an input record's Kafka timestamp to its tier change handed to the producer.",
    ),
    (
        "Step and commit duration (p99)",
        "s",
        [
            (
                "step {{kind}}",
                "histogram_quantile(0.99, sum by (le, kind) "
                "(rate(tierstream_step_seconds_bucket[5m])))",
            ),
            (
                "Redis commit",
                "histogram_quantile(0.99, sum by (le) "
                "(rate(tierstream_redis_commit_seconds_bucket[5m])))",
            ),
            (
                "Kafka offset commit",
                "histogram_quantile(0.99, sum by (le) "
                "(rate(tierstream_kafka_commit_seconds_bucket[5m])))",
            ),
        ],
        "A step loads, scores and commits one batch of a shard atomically.",
    ),
    (
        "Dead letters/s by kind",
        "ops",
        [("{{kind}}", "sum by (kind) (rate(tierstream_dead_letters_total[5m]))")],
        "Input messages that break the contract (docs/contracts.md), sent to dead-letters.",
    ),
    (
        "Outbox depth",
        "short",
        [("{{instance}}", "sum by (instance) (tierstream_outbox_depth)")],
        "Changes committed to Redis but not yet acknowledged by Kafka (re-sent until they are).",
    ),
    (
        "Timer lateness (time-driven changes)",
        "s",
        [
            (
                f"p{q}",
                f"histogram_quantile(0.{q}, sum by (le) "
                "(rate(tierstream_timer_lateness_seconds_bucket[10m])))",
            )
            for q in (50, 99)
        ],
        "How long after its moment (a recency threshold crossed) a time-driven change fired.",
    ),
    (
        "Rebalances and owned shards",
        "short",
        [
            ("rebalances (5m)", "sum(increase(tierstream_rebalances_total[5m]))"),
            ("shards {{instance}}", "sum by (instance) (tierstream_owned_shards)"),
        ],
        "Partition assignments received, and how many shards each worker owns.",
    ),
    (
        "Worker CPU and memory",
        "short",
        [
            ("CPU cores {{instance}}", 'rate(process_cpu_seconds_total{job="worker"}[1m])'),
            ("RSS GiB {{instance}}", 'process_resident_memory_bytes{job="worker"} / 2^30'),
        ],
        "Per worker process (one per core is the rule).",
    ),
    (
        "Customers by tier",
        "short",
        [("{{tier}}", 'max by (tier) (tierstream_customers_by_tier{job="api"})')],
        "From the API's last scan of the state (every TIERSTREAM_SIZES_TTL seconds at most).",
    ),
    (
        "Services reachable",
        "short",
        [("{{service}}", "min by (service) (tierstream_up)")],
        "1: the last scrape reached Redis / Kafka.",
    ),
    (
        "Subscriptions: deliveries/s and lag",
        "short",
        [
            (
                "delivered {{subscription}}",
                "sum by (subscription) (rate(tierstream_deliver_delivered_total[1m]))",
            ),
            (
                "dead-lettered {{subscription}}",
                "sum by (subscription) (rate(tierstream_deliver_dead_lettered_total[1m]))",
            ),
            ("lag {{subscription}}", "max by (subscription) (tierstream_deliver_lag)"),
        ],
        "tierstream deliver (compose profile deliver): webhook deliveries, changes "
        "dead-lettered after the last attempt, and tier changes not yet delivered.",
    ),
]


def panel(index: int, title: str, unit: str, targets: list[tuple[str, str]], about: str) -> Any:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "description": about,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + n), "datasource": DATASOURCE, "expr": expr,
             "legendFormat": legend}
            for n, (legend, expr) in enumerate(targets)
        ],
    }  # fmt: skip


def dashboard() -> dict[str, Any]:
    return {
        "uid": "tierstream",
        "title": "tierstream",
        "tags": ["tierstream", "kafka"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "panels": [panel(i, *spec) for i, spec in enumerate(PANELS)],
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")
