"""What the benchmark is judged against, and where its results go: shared by the run
(bench/run.py), which measures, and the report (bench/report.py), which draws and tables."""

from __future__ import annotations

from bench.infra import ROOT

RESULTS = ROOT / "bench" / "results"
PLOT = ROOT / "docs" / "img" / "benchmarks.png"

LATENCY_TARGET_RATE = 5_000.0  # events/s at which the latency target holds

# Targets (docs/benchmarks.md): metric -> (comparison, threshold, what it is relative to)
TARGETS: dict[str, tuple[str, float, str]] = {
    "worker_vs_raw": (">=", 0.25, "worker_eps / raw_consume_eps"),
    "worker_vs_naive": (">=", 10.0, "worker_eps / naive_eps"),
    "worker_vs_peer": (">=", 1.0, "worker_eps / peer_eps"),
    "latency_p99_ms": ("<=", 100.0, f"at {LATENCY_TARGET_RATE:,.0f} events/s offered"),
    "inactivity_lag_p99_ms": ("<=", 2000.0, "moment -> change consumed"),
    "redis_bytes_per_customer": (
        "<=",
        512.0,
        "INFO used_memory delta / customers, idle private Redis holding the worker's keys",
    ),
    "replay_eps": (">=", 75_000.0, "CDNOW, in-process"),
}
