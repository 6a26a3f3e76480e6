"""Plot and markdown table from a benchmark run's results.

    python -m bench.report [bench/results] [--plot docs/img/benchmarks.png]

prints the results-vs-targets table (the one in docs/benchmarks.md) and redraws the plot
from bench/results/latest.json and latest-detail.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib import pyplot as plt  # after choosing the backend
from matplotlib.ticker import FixedFormatter, FixedLocator, NullFormatter

from bench.targets import LATENCY_TARGET_RATE, PLOT, RESULTS, TARGETS


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _spread(summary: dict[str, Any], key: str, digits: int = 0) -> str:
    entry = summary.get(key) or {}
    if entry.get("n", 0) < 2:
        return ""
    return f" ({_fmt(entry['min'], digits)}–{_fmt(entry['max'], digits)})"


def _target(metric: str) -> str:
    """A target as the table shows it, from ``bench.targets.TARGETS``: "≥ 0.25", "≤ 2,000"."""
    op, threshold, _ = TARGETS[metric]
    return f"{'≥' if op == '>=' else '≤'} {threshold:,g}"


def markdown_table(latest: dict[str, Any], detail: dict[str, Any]) -> str:
    summary = detail.get("summary", {})
    targets = detail.get("targets", {})

    def met(metric: str) -> str:
        verdict = (targets.get(metric) or {}).get("met")
        return {True: "**yes**", False: "no", None: "—"}[verdict]

    rows = [
        ("metric", "median (min–max)", "target", "met"),
        (
            "raw_consume_eps (aiokafka, json.loads only)",
            _fmt(latest["raw_consume_eps"]) + _spread(summary, "raw_consume_eps"),
            "",
            "",
        ),
        (
            "naive_eps (Faust agent, 1 Redis round trip/event)",
            _fmt(latest["naive_eps"]) + _spread(summary, "naive_eps"),
            "",
            "",
        ),
        (
            "peer_eps (quix-streams, RocksDB state + changelog, 1 output/event)",
            _fmt(latest.get("peer_eps")) + _spread(summary, "peer_eps"),
            "",
            "",
        ),
        (
            "worker_eps (tierstream worker, start-up included)",
            _fmt(latest["worker_eps"]) + _spread(summary, "worker_eps"),
            "",
            "",
        ),
        (
            "worker_eps / raw_consume_eps",
            _fmt(_median(summary, "worker_vs_raw"), 2) + _spread(summary, "worker_vs_raw", 2),
            _target("worker_vs_raw"),
            met("worker_vs_raw"),
        ),
        (
            "worker_eps / naive_eps",
            _fmt(_median(summary, "worker_vs_naive"), 2) + _spread(summary, "worker_vs_naive", 2),
            _target("worker_vs_naive"),
            met("worker_vs_naive"),
        ),
        (
            "worker_eps / peer_eps",
            _fmt(_median(summary, "worker_vs_peer"), 2) + _spread(summary, "worker_vs_peer", 2),
            _target("worker_vs_peer"),
            met("worker_vs_peer"),
        ),
        (
            f"latency p50, ms (at {_fmt(_median(summary, 'latency_offered_rate'))} events/s)",
            _fmt(latest["latency_p50_ms"]) + _spread(summary, "latency_p50_ms"),
            "",
            "",
        ),
        (
            f"latency p99, ms (at {_fmt(_median(summary, 'latency_offered_rate'))} events/s)",
            _fmt(latest["latency_p99_ms"]) + _spread(summary, "latency_p99_ms"),
            f"{_target('latency_p99_ms')} at {LATENCY_TARGET_RATE:,.0f}/s",
            met("latency_p99_ms"),
        ),
        (
            "inactivity lag p99, ms",
            _fmt(latest["inactivity_lag_p99_ms"]) + _spread(summary, "inactivity_lag_p99_ms"),
            _target("inactivity_lag_p99_ms"),
            met("inactivity_lag_p99_ms"),
        ),
        (
            "Redis bytes per customer (used_memory delta, idle copy)",
            _fmt(latest["redis_bytes_per_customer"]) + _spread(summary, "redis_bytes_per_customer"),
            _target("redis_bytes_per_customer"),
            met("redis_bytes_per_customer"),
        ),
        (
            "replay_eps (CDNOW, in-process)",
            _fmt(latest["replay_eps"]) + _spread(summary, "replay_eps"),
            _target("replay_eps"),
            met("replay_eps"),
        ),
    ]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def _median(summary: dict[str, Any], key: str) -> float | None:
    entry = summary.get(key)
    return None if not entry else entry.get("median")


def plot(latest: dict[str, Any], detail: dict[str, Any], path: Path) -> None:
    summary = detail.get("summary", {})
    repeats = detail.get("repeats_raw", {})
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    machine = latest.get("machine") or {}
    load = (detail.get("load_average") or {}).get("load1_median")
    fig.suptitle(
        f"tierstream bench ({detail.get('mode')}, {latest.get('events') or 0:,} events, "
        f"{detail.get('repeats')} repeat(s)) on {machine.get('cores')} cores, "
        f"{machine.get('cpu', '?')[:40]}; median load {load}",
        fontsize=11,
    )

    # 1. throughput, median with min-max whiskers
    ax = axes[0][0]
    bars = [
        ("raw consume", "raw_consume_eps", "#7f7f7f"),
        ("worker", "worker_eps", "#1f77b4"),
        ("worker\nsteady", "worker_steady_eps", "#aec7e8"),
        ("naive agent", "naive_eps", "#d62728"),
        ("quix peer", "peer_eps", "#ff7f0e"),
        ("replay\n(CDNOW)", "replay_eps", "#2ca02c"),
    ]
    names, heights, lows, highs, colors = [], [], [], [], []
    for label, key, color in bars:
        entry = summary.get(key) or {}
        if entry.get("median") is None:
            continue
        names.append(label)
        heights.append(entry["median"])
        lows.append(entry["median"] - entry["min"])
        highs.append(entry["max"] - entry["median"])
        colors.append(color)
    ax.bar(names, heights, color=colors, yerr=[lows, highs], capsize=4)
    ax.set_yscale("log")
    ax.set_ylabel("events / s (log)")
    ax.set_title("Throughput: median, whiskers = min/max over repeats")
    for i, h in enumerate(heights):
        ax.text(i, h * 1.15, f"{h:,.0f}", ha="center", fontsize=9)
    ax.tick_params(axis="x", labelsize=9)
    for base_key, metric, label, color, style in (
        ("raw_consume_eps", "worker_vs_raw", "raw", "#7f7f7f", "--"),
        ("naive_eps", "worker_vs_naive", "naive", "#d62728", ":"),
        ("peer_eps", "worker_vs_peer", "peer", "#ff7f0e", "-."),
    ):
        base = _median(summary, base_key)
        if base:
            level = TARGETS[metric][1] * base
            ax.axhline(level, color=color, ls=style, lw=1)
            text = f"target: {TARGETS[metric][1]:g} × {label}"
            ax.text(len(names) - 0.5, level * 1.08, text, ha="right", fontsize=8)
    ax.set_ylim(top=max(heights or [1]) * 3)

    # 2. progress curves of the first repeat
    ax = axes[0][1]
    for label, phase, color in (
        ("raw consume", "raw", "#7f7f7f"),
        ("worker (applied in Redis)", "worker", "#1f77b4"),
        ("naive agent", "naive", "#d62728"),
        ("quix peer", "peer", "#ff7f0e"),
    ):
        runs = repeats.get(phase) or []
        if not runs or not runs[0].get("progress"):
            continue
        points = runs[0]["progress"]
        ax.plot([p[0] for p in points], [p[1] for p in points], label=label, color=color)
    ax.set_xlabel("seconds since the process was spawned")
    ax.set_ylabel("events done")
    ax.set_title("Progress, repeat 1 (start-up included)")
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3)

    # 3. latency distribution
    ax = axes[1][0]
    runs = sorted(
        (r for r in repeats.get("latency") or [] if r.get("latency_p99_ms") is not None),
        key=lambda r: r["latency_p99_ms"],
    )
    runs = runs[len(runs) // 2 :]  # the repeat with the median p99 first
    if runs and runs[0].get("latency_histogram_ms", {}).get("edges"):
        hist = runs[0]["latency_histogram_ms"]
        edges, counts = hist["edges"], hist["counts"]
        ax.stairs(counts, edges, fill=True, color="#9467bd", alpha=0.7)
        ax.set_xscale("log")
        for value, label, style in (
            (runs[0].get("latency_p50_ms"), "p50", "-"),
            (runs[0].get("latency_p99_ms"), "p99", "--"),
        ):
            if value:
                ax.axvline(value, color="black", ls=style, lw=1)
                ax.text(value, max(counts) * 0.95, f" {label} {value:,.0f} ms", fontsize=8)
        ax.axvline(100, color="#d62728", ls=":", lw=1)
        ax.text(
            100, max(counts) * 0.6, "target p99 100 ms ", color="#d62728", fontsize=8, ha="right"
        )
        kept = {True: "kept up", False: "did NOT keep up"}.get(runs[0].get("kept_up"), "")
        ax.set_title(
            f"Event sent → tier change consumed, repeat {runs[0].get('repeat', 1)} (median p99)\n"
            f"({runs[0].get('offered_rate', 0):,.0f} events/s offered; worker {kept})",
            fontsize=10,
        )
        ax.set_xlabel("ms (log)")
        ax.set_ylabel("changes")
        ticks = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000]
        ticks = [t for t in ticks if edges[0] <= t <= edges[-1]]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FixedFormatter([f"{t:,}" for t in ticks]))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_title("latency: not measured")

    # 4. targets: value relative to target (>= 1 means met)
    ax = axes[1][1]
    targets = detail.get("targets", {})
    labels, scores, colors = [], [], []
    for metric, (op, threshold, _) in TARGETS.items():
        value = (targets.get(metric) or {}).get("value")
        if value is None or value <= 0:
            continue
        score = value / threshold if op == ">=" else threshold / value
        labels.append(f"{metric}\n{value:,.2f} {op} {threshold:g}")
        scores.append(score)
        colors.append("#2ca02c" if score >= 1 else "#d62728")
    ax.barh(labels, scores, color=colors)
    ax.axvline(1.0, color="black", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("headroom vs target (≥ 1: met; log)")
    ax.set_title("Targets")
    ax.tick_params(axis="y", labelsize=8)
    ax.invert_yaxis()

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument("results", nargs="?", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, default=PLOT)
    args = parser.parse_args(argv)
    latest = json.loads((args.results / "latest.json").read_text())
    detail = json.loads((args.results / "latest-detail.json").read_text())
    print(markdown_table(latest, detail))
    plot(latest, detail, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
