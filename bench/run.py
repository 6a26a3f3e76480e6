"""``tierstream bench``: one run of every measurement on the local Kafka and Redis.

    python -m bench.run [--quick] [--repeats N] [--events N] [...]

See docs/benchmarks.md for what is measured and how, and ``main --help`` for the options.
Results: bench/results/latest.json (medians) and bench/results/latest-detail.json
(every repeat, spreads, ratios, targets, load average, profile), and the plot
docs/img/benchmarks.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import redis

from bench import phases
from bench.infra import (
    ROOT,
    PrivateRedis,
    Resources,
    ServiceEpoch,
    child_env,
    load,
    load_average,
    machine_info,
    peer_python,
)
from bench.mix import MixSpec, generate
from bench.targets import LATENCY_TARGET_RATE, PLOT, RESULTS, TARGETS

PHASES = ("raw", "naive", "peer", "worker", "latency", "replay", "anatomy", "profile")


class Baseline(NamedTuple):
    """A throughput baseline the worker is compared with, repeat by repeat."""

    ratio: str  # worker_eps / its eps
    label: str
    measure: Callable[[phases.Context], dict[str, Any]]


BASELINES = {
    "raw": Baseline("worker_vs_raw", "raw aiokafka consumer", phases.raw_consume),
    "naive": Baseline(
        "worker_vs_naive", "naive Faust agent (one Redis round trip per event)", phases.naive
    ),
    "peer": Baseline(
        "worker_vs_peer",
        "quix-streams peer (RocksDB state, changelog, one output per event)",
        phases.peer,
    ),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="tierstream bench",
        description="Benchmark the streaming worker against a bare consumer, a naive "
        "Faust agent and a quix-streams peer on the local Kafka and Redis, plus latency, "
        "inactivity lag, Redis memory and replay speed. Everything is measured in this one "
        "run.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="about 20k events, 1 repeat, 8 s latency phase (about 2-3 minutes)",
    )
    parser.add_argument("--events", type=int, help="events in the mix (default 100k; quick 20k)")
    parser.add_argument(
        "--naive-events",
        type=int,
        help="events the naive agent is timed over, the first it reads (default 40k; quick 8k):"
        " its rate is flat and all of them would take minutes",
    )
    parser.add_argument("--customers", type=int, default=100_000, help="customer id space")
    parser.add_argument("--repeats", type=int, help="repeats of each measurement (default 3)")
    parser.add_argument("--seed", type=int, default=20_240_601)
    parser.add_argument(
        "--rate",
        type=float,
        default=LATENCY_TARGET_RATE,
        help="offered events/s in the latency phase (default: the latency target's, "
        f"{LATENCY_TARGET_RATE:,.0f})",
    )
    parser.add_argument(
        "--latency-seconds", type=float, help="length of the latency phase (default 20; quick 8)"
    )
    parser.add_argument(
        "--inactive-customers",
        type=int,
        help="customers put on a recency cut at the rehearsed midnight (default 1000; quick 300)",
    )
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)}",
    )
    parser.add_argument(
        "--kafka-bootstrap",
        default=env.get("TIERSTREAM_KAFKA_BOOTSTRAP") or "127.0.0.1:9092",
    )
    parser.add_argument(
        "--redis-url", default=env.get("TIERSTREAM_REDIS_URL") or "redis://127.0.0.1:6379/0"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="results directory (default bench/results)"
    )
    parser.add_argument("--plot", type=Path, default=PLOT, help="PNG to write ('' for none)")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds before one measurement gives up"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the subprocess logs")
    parser.add_argument(
        "--worker-processes",
        type=int,
        default=1,
        help="worker processes in the worker and latency phases (tierstream worker "
        "--processes N; default 1)",
    )
    args = parser.parse_args(argv)
    args.events = args.events or (20_000 if args.quick else 100_000)
    args.naive_events = min(args.events, args.naive_events or (8_000 if args.quick else 40_000))
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.latency_seconds = args.latency_seconds or (8.0 if args.quick else 20.0)
    args.inactive_customers = args.inactive_customers or (300 if args.quick else 1000)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    if args.repeats < 1 or args.events < 1000:
        parser.error("--repeats must be >= 1 and --events >= 1000")
    return args


class LoadSampler:
    """Samples the 1-minute load average every few seconds in the background."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self.samples: list[tuple[float, list[float]]] = []
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((round(time.monotonic() - self._started, 1), load_average()))
            self._stop.wait(self.every)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, Any]:
        one = [sample[1][0] for sample in self.samples]
        return {
            "load1_min": min(one) if one else None,
            "load1_median": sorted(one)[len(one) // 2] if one else None,
            "load1_max": max(one) if one else None,
            "samples": self.samples,
        }


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _git_commit() -> str | None:
    """HEAD, with "+dirty" when the code the run imports differs from it."""
    head = _git("rev-parse", "--short", "HEAD")
    changed = _git("status", "--porcelain", "--", "bench", "scoring", "streams", "tierstream")
    return f"{head}+dirty" if head and changed else head


def _median(summary: dict[str, Any], name: str) -> float | None:
    entry = summary.get(name)
    return None if entry is None else entry["median"]


def _verdict(metric: str, value: float | None) -> bool | None:
    if value is None:
        return None
    op, threshold, _ = TARGETS[metric]
    return value >= threshold if op == ">=" else value <= threshold


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    started_at = datetime.now(UTC)

    def log(message: str) -> None:
        print(f"[bench {time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    res = Resources(args.kafka_bootstrap, args.redis_url)
    workdir = Path(tempfile.mkdtemp(prefix=f"tierstream-bench-{res.run_id}-"))
    repeats: dict[str, list[dict[str, Any]]] = {p: [] for p in PHASES if p != "profile"}
    detail: dict[str, Any] = {
        "run_id": res.run_id,
        "started_at": started_at.isoformat(),
        "git_commit": _git_commit(),
        "argv": sys.argv[1:] if argv is None else list(argv),
        "mode": "quick" if args.quick else "full",
        "repeats": args.repeats,
        "services": {"kafka": args.kafka_bootstrap, "redis": args.redis_url},
        "naive_events": args.naive_events,
        "worker_processes": args.worker_processes,
        "conventions": (
            "eps = events / seconds from spawning the process until the last event is done "
            "(worker: every input offset applied in Redis and every outbox drained); nothing "
            "subtracted. startup_s = spawn to first event done; steady_eps = rate between "
            "10% and 90% done. The naive agent is timed over the first naive_events events it "
            "reads. Latency = tier change consumed (this process) - event handed to the "
            "producer (this process), for events that caused a change. Inactivity lag = "
            "change consumed - midnight in the worker's clock, converted with the per-shard "
            "clock shift's upper bound (conservative); the lower bound is reported too. "
            "Replay and the hot-path profile run in a fresh interpreter each. Medians over "
            "repeats; ratios per repeat, then their median."
        ),
        "errors": [],
    }
    peer = peer_python()
    if "peer" in args.phases and peer is None:
        # An install without the peer's environment still measures everything else.
        args.phases.remove("peer")
        detail["skipped"] = {
            "peer": "quixstreams is not installed: `make install` puts it in .venv-peer"
        }
        log(detail["skipped"]["peer"])
    needs_services = any(p in args.phases for p in ("raw", "naive", "peer", "worker", "latency"))
    exit_code = 0
    private: PrivateRedis | None = None
    with LoadSampler() as load_sampler:
        try:
            detail["machine"] = machine_info(args.redis_url)
            detail["services_at_start"] = ServiceEpoch.read(args.redis_url).__dict__
            spec = MixSpec(events=args.events, customers=args.customers, seed=args.seed)
            end = datetime.now(UTC)
            log(f"generating {spec.events:,} events over {spec.customers:,} customers")
            mix = generate(spec, end)
            detail["mix"] = {"spec": spec.to_dict(), "end": end.isoformat(), **mix.stats()}
            ctx = None
            if needs_services:
                topics = res.topic_set("load", 4)
                log(f"loading into {topics['purchases']} / {topics['engagements']} (4 partitions)")
                t = time.monotonic()
                total = load(args.kafka_bootstrap, topics, mix.events)
                detail["load_seconds"] = time.monotonic() - t
                ctx = phases.Context(
                    res,
                    workdir,
                    topics,
                    total,
                    log,
                    args.timeout,
                    args.naive_events,
                    peer,
                    args.worker_processes,
                )
            if ctx is not None and "worker" in args.phases:
                try:
                    private = PrivateRedis(workdir)
                except (OSError, redis.RedisError) as exc:
                    detail["errors"].append(f"no private Redis for the memory measurement: {exc}")
            for r in range(args.repeats):
                _run_repeat(args, ctx, private, workdir, r, repeats, detail, log)
            if ctx is not None and "latency" in args.phases:
                for r in range(args.repeats):
                    _run_latency(args, ctx, r, repeats, log)
            if ctx is not None and "anatomy" in args.phases:
                log("worker anatomy: the worker once more, with timers around its steps")
                detail["anatomy"] = phases.anatomy(ctx)
                log(f"  {json.dumps(detail['anatomy']['us_per_event'])}")
            if "profile" in args.phases:
                log("profiling ShardProcessor.process in-process (a fresh interpreter)")
                ns = res.namespace()
                res.namespaces.extend([ns + "a", ns + "b"])
                n = min(len(mix.events), 5_000 if args.quick else 20_000)
                options = [
                    f"--events={spec.events}",
                    f"--customers={spec.customers}",
                    f"--seed={spec.seed}",
                    f"--end={end.isoformat()}",
                    f"--limit={n}",
                ]
                if needs_services:
                    options += [f"--redis-url={args.redis_url}", f"--namespace={ns}"]
                detail["profile"] = _inproc("profile", workdir, options)
        except Exception as exc:  # noqa: BLE001 - report, clean up, exit non-zero
            exit_code = 1
            detail["errors"].append("".join(traceback.format_exception(exc)))
            log(f"FAILED: {exc!r}")
        finally:
            if private is not None:
                private.stop()
            if needs_services:
                problems = res.cleanup()
                if problems:
                    detail["errors"].append(f"cleanup: {problems}")
            if args.keep_logs:
                detail["logs"] = str(workdir)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    detail["load_average"] = load_sampler.summary()
    detail["seconds"] = time.monotonic() - started
    summary, latest = _aggregate(repeats, detail)
    detail["summary"] = summary
    if args.plot and str(args.plot) not in ("", "."):
        from bench.report import plot

        try:
            plot(latest, detail, args.plot)
            log(f"plot: {args.plot}")
        except Exception as exc:  # noqa: BLE001 - a missing plot does not void the numbers
            detail["errors"].append(f"plot: {exc!r}")
    _write(args, latest, detail)
    log(f"done in {detail['seconds']:.0f}s: {json.dumps(latest)}")
    return exit_code


def _inproc(what: str, workdir: Path, options: list[str] | None = None) -> dict[str, Any]:
    """Run ``bench.inproc`` in a fresh interpreter; its JSON result."""
    out = workdir / f"inproc-{what}-{time.monotonic_ns()}.json"
    subprocess.run(  # our own module
        [sys.executable, "-m", "bench.inproc", what, str(out), *(options or [])],
        cwd=workdir,
        env=child_env(),
        check=True,
        timeout=600,
    )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _run_repeat(
    args: argparse.Namespace,
    ctx: phases.Context | None,
    private: PrivateRedis | None,
    workdir: Path,
    r: int,
    repeats: dict[str, list[dict[str, Any]]],
    detail: dict[str, Any],
    log: Callable[[str], None],
) -> None:
    """One repeat of the throughput measurements, back to back (ratios are per repeat)."""

    def record(name: str, result: dict[str, Any]) -> None:
        result["repeat"] = r + 1
        result["load_average"] = load_average()
        repeats[name].append(result)

    tag = f"repeat {r + 1}/{args.repeats}"
    for name, baseline in BASELINES.items():
        if ctx is not None and name in args.phases:
            log(f"{tag}: {baseline.label}")
            record(name, baseline.measure(ctx))
            log(f"  {name} {repeats[name][-1]['eps']:,.0f} events/s")
    if ctx is not None and "worker" in args.phases:
        log(f"{tag}: tierstream worker")
        record("worker", phases.worker_throughput(ctx, private))
        w = repeats["worker"][-1]
        log(
            f"  worker {w['eps']:,.0f} events/s (start-up {w['startup_s']:.1f}s, "
            f"steady {w['steady_eps'] or math.nan:,.0f}/s), {w['tier_changes']:,} changes, "
            f"{w['dead_letters']} dead letters, {w['redis_bytes_per_customer']:.0f} Redis "
            f"bytes/customer"
        )
    if "replay" in args.phases:
        log(f"{tag}: CDNOW replay in-process (a fresh interpreter)")
        record("replay", _inproc("replay", workdir))
        log(f"  replay {repeats['replay'][-1]['eps']:,.0f} events/s")


def _run_latency(
    args: argparse.Namespace,
    ctx: phases.Context,
    r: int,
    repeats: dict[str, list[dict[str, Any]]],
    log: Callable[[str], None],
) -> None:
    """One latency repeat at the offered rate (--rate), whether or not the worker can keep
    up with it: each repeat reports whether it did (kept_up)."""
    rate = args.rate
    startups = [w["startup_s"] for w in repeats.get("worker", []) if w.get("startup_s")]
    budget = min(60.0, max(6.0, 1.5 * max(startups, default=10.0) + 2.0))
    log(
        f"latency repeat {r + 1}/{args.repeats}: {rate:,.0f} events/s for "
        f"{args.latency_seconds:.0f}s, {args.inactive_customers} customers crossing a "
        f"recency cut at a rehearsed midnight"
    )
    result = phases.latency_and_inactivity(
        ctx,
        rate=rate,
        duration=args.latency_seconds,
        inactive=args.inactive_customers,
        startup_budget=budget,
        seed=args.seed + 1000 * (r + 1),
    )
    result["repeat"] = r + 1
    result["load_average"] = load_average()
    repeats["latency"].append(result)
    log(
        f"  latency p50 {result['latency_p50_ms'] or math.nan:.0f} ms, p99 "
        f"{result['latency_p99_ms'] or math.nan:.0f} ms ({result['changes_matched']:,} changes, "
        f"sent at {result['achieved_send_rate']:,.0f}/s, kept up: {result['kept_up']}); "
        f"inactivity {result['inactivity_seen']}/{result['inactivity_expected']}, lag p99 "
        f"{result['inactivity_lag_p99_ms'] or math.nan:.0f} ms"
    )


def _aggregate(
    repeats: dict[str, list[dict[str, Any]]], detail: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    s = phases.summarize

    def col(phase: str, key: str) -> list[Any]:
        return [item.get(key) for item in repeats.get(phase, [])]

    summary: dict[str, Any] = {
        "raw_consume_eps": s(col("raw", "eps")),
        "raw_consume_steady_eps": s(col("raw", "steady_eps")),
        "raw_consume_startup_s": s(col("raw", "startup_s")),
        "naive_eps": s(col("naive", "eps")),
        "naive_steady_eps": s(col("naive", "steady_eps")),
        "naive_startup_s": s(col("naive", "startup_s")),
        "peer_eps": s(col("peer", "eps")),
        "peer_steady_eps": s(col("peer", "steady_eps")),
        "peer_startup_s": s(col("peer", "startup_s")),
        "worker_eps": s(col("worker", "eps")),
        "worker_steady_eps": s(col("worker", "steady_eps")),
        "worker_startup_s": s(col("worker", "startup_s")),
        "worker_seconds": s(col("worker", "seconds")),
        "redis_bytes_per_customer": s(col("worker", "redis_bytes_per_customer")),
        "redis_bytes_per_customer_shared": s(col("worker", "redis_bytes_per_customer_shared")),
        "redis_memory_usage_per_customer": s(col("worker", "redis_memory_usage_per_customer")),
        "latency_p50_ms": s(col("latency", "latency_p50_ms")),
        "latency_p99_ms": s(col("latency", "latency_p99_ms")),
        "latency_p99_outside_midnight_ms": s(col("latency", "latency_p99_outside_midnight_ms")),
        "latency_offered_rate": s(col("latency", "offered_rate")),
        "latency_achieved_send_rate": s(col("latency", "achieved_send_rate")),
        "inactivity_lag_p50_ms": s(col("latency", "inactivity_lag_p50_ms")),
        "inactivity_lag_p99_ms": s(col("latency", "inactivity_lag_p99_ms")),
        "inactivity_lag_p99_ms_lower_bound": s(col("latency", "inactivity_lag_p99_ms_lower_bound")),
        "inactivity_lag_worker_p99_ms": s(col("latency", "inactivity_lag_worker_p99_ms")),
        "replay_eps": s(col("replay", "eps")),
    }
    # Ratios per repeat (same repeat = same conditions), then their median.
    ratios: dict[str, list[float | None]] = {
        name: [] for b in BASELINES.values() for name in (b.ratio, f"{b.ratio}_steady")
    }
    for i, worker in enumerate(repeats.get("worker", [])):
        for other, (key, _, _) in BASELINES.items():
            if i < len(repeats.get(other, [])):
                base = repeats[other][i]
                ratios[key].append(worker["eps"] / base["eps"])
                if worker.get("steady_eps") and base.get("steady_eps"):
                    ratios[f"{key}_steady"].append(worker["steady_eps"] / base["steady_eps"])
    for key, per_repeat in ratios.items():
        summary[key] = s(per_repeat)
    latest = {
        "events": (detail.get("mix") or {}).get("events"),
        "raw_consume_eps": _median(summary, "raw_consume_eps"),
        "naive_eps": _median(summary, "naive_eps"),
        "peer_eps": _median(summary, "peer_eps"),
        "worker_eps": _median(summary, "worker_eps"),
        "latency_p50_ms": _median(summary, "latency_p50_ms"),
        "latency_p99_ms": _median(summary, "latency_p99_ms"),
        "latency_offered_eps": _median(summary, "latency_offered_rate"),
        "inactivity_lag_p99_ms": _median(summary, "inactivity_lag_p99_ms"),
        "redis_bytes_per_customer": _median(summary, "redis_bytes_per_customer"),
        "replay_eps": _median(summary, "replay_eps"),
        "machine": detail.get("machine"),
    }
    detail["repeats_raw"] = repeats
    values = {
        "worker_vs_raw": _median(summary, "worker_vs_raw"),
        "worker_vs_naive": _median(summary, "worker_vs_naive"),
        "worker_vs_peer": _median(summary, "worker_vs_peer"),
        "latency_p99_ms": latest["latency_p99_ms"],
        "inactivity_lag_p99_ms": latest["inactivity_lag_p99_ms"],
        "redis_bytes_per_customer": latest["redis_bytes_per_customer"],
        "replay_eps": latest["replay_eps"],
    }
    detail["targets"] = {
        metric: {
            "value": values[metric],
            "target": f"{op} {threshold:g}",
            "of": of,
            "met": _verdict(metric, values[metric]),
        }
        for metric, (op, threshold, of) in TARGETS.items()
    }
    return summary, latest


def _write(args: argparse.Namespace, latest: dict[str, Any], detail: dict[str, Any]) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    profile = detail.get("profile") or {}
    text = (profile.get("profile") or {}).pop("text", None)
    if text:
        (args.out / "latest-profile.txt").write_text(text)
    (args.out / "latest.json").write_text(json.dumps(latest, indent=2) + "\n")
    (args.out / "latest-detail.json").write_text(json.dumps(detail, indent=1, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main())
