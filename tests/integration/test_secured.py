"""Every client works against a secured cluster: Kafka with SASL (PLAIN) with and without
TLS, and with TLS alone, and Redis with AUTH over TLS, configured only through the
TIERSTREAM_ settings.

``topics create``, ``produce``, the worker, ``serve`` and ``/healthz`` are run as users run
them (the CLI, in subprocesses) against a private broker and a private Redis (see
secured.py); the worker's result is compared with a replay of the same events.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scoring.engine import Scorer
from streams.producer import event_json
from tests.cdnow import cdnow_history
from tests.integration.api_support import free_port
from tests.integration.secured import SecuredKafka, SecuredRedis
from tierstream.replay import ReplayStats, replay
from tierstream.settings import load_scoring_config
from tierstream.shift import days_to_now, shift_days

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 3000  # the first CDNOW purchases: enough customers, quick to apply
TOKEN = "secured-test-token"


@pytest.fixture(scope="module")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    kafka = SecuredKafka.start(tmp_path_factory.mktemp("secured-kafka"))
    try:
        yield kafka
    finally:
        kafka.stop()


@pytest.fixture(scope="module")
def first_purchases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    """The first EVENTS CDNOW purchases, as a JSONL file for `produce` (a file this small
    is read at once, the whole CDNOW file is not) and as events."""
    events = sorted(
        cdnow_history(),
        key=lambda e: (e.occurred_at, e.event_id),
    )[:EVENTS]
    path = tmp_path_factory.mktemp("events") / "first.jsonl"
    path.write_bytes(b"".join(event_json(event) + b"\n" for event in events))
    return path, events


@pytest.fixture(scope="module")
def secured_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredRedis]:
    server = SecuredRedis.start(tmp_path_factory.mktemp("secured-redis"))
    try:
        yield server
    finally:
        server.stop()


def _env(
    kafka: SecuredKafka, redis_server: SecuredRedis, protocol: str, mechanism: str = "PLAIN"
) -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    base = {k: v for k, v in os.environ.items() if not k.startswith("TIERSTREAM_")}
    return {
        **base,
        "PYTHONPATH": str(ROOT),
        **kafka.settings(protocol, mechanism),
        "TIERSTREAM_REDIS_URL": redis_server.url,
        "TIERSTREAM_REDIS_NAMESPACE": f"s{run}",
        "TIERSTREAM_APP_ID": f"secured-{run}",
        "TIERSTREAM_PARTITIONS": "2",
        "TIERSTREAM_TOPIC_PURCHASES": f"purchases-{run}",
        "TIERSTREAM_TOPIC_ENGAGEMENTS": f"engagements-{run}",
        "TIERSTREAM_TOPIC_TIER_CHANGES": f"tier-changes-{run}",
        "TIERSTREAM_TOPIC_DEAD_LETTERS": f"dead-letters-{run}",
        "TIERSTREAM_API_TOKEN": TOKEN,
    }


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # our own CLI
        [sys.executable, "-m", "tierstream.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _get(port: int, path: str, token: str | None = TOKEN) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode()


def _wait_for(port: int, path: str, status: int, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            code, last = _get(port, path)
            if code == status:
                return last
        except OSError as exc:  # not listening yet
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{path} never answered {status}: {last}")


def _serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(  # our own CLI
            [sys.executable, "-m", "tierstream.cli", "serve"],
            cwd=ROOT,
            env={**env, "TIERSTREAM_API_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, port


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [
        ("SASL_PLAINTEXT", "PLAIN"),
        ("SASL_SSL", "PLAIN"),
        ("SASL_SSL", "SCRAM-SHA-512"),  # what managed clusters often offer
        ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
        ("SSL", None),
    ],
)
def test_topics_produce_serve_and_healthz_through_a_secured_listener(
    secured_kafka: SecuredKafka,
    secured_redis: SecuredRedis,
    first_purchases: tuple[Path, list[Any]],
    protocol: str,
    mechanism: str | None,
    tmp_path: Path,
) -> None:
    env = _env(secured_kafka, secured_redis, protocol, mechanism or "PLAIN")
    created = _cli(env, "topics", "create")
    assert created.returncode == 0, created.stderr
    assert env["TIERSTREAM_TOPIC_PURCHASES"] in created.stdout
    produced = _cli(
        env, "produce", str(first_purchases[0]), "--format", "jsonl", "--limit", "500", "--quiet"
    )
    assert produced.returncode == 0, produced.stderr
    assert json.loads(produced.stdout.splitlines()[-1])["sent"] == 500
    server, port = _serve(env, tmp_path / "serve.log")
    try:
        health = _wait_for(port, "/healthz", 200)
        assert health["kafka"]["ok"] and health["redis"]["ok"], health
        assert _get(port, "/tiers", token=None)[0] == 401  # the token is required
        assert _get(port, "/tiers")[0] == 200
    finally:
        _stop(server)
    # A wrong password, or a certificate signed by another CA, is refused: one line and
    # exit 2, not hung on or ignored.
    if protocol.startswith("SASL_"):
        wrong = {**env, "TIERSTREAM_KAFKA_SASL_PASSWORD": "not-the-password"}
    else:
        wrong = {k: v for k, v in env.items() if k != "TIERSTREAM_KAFKA_SSL_CAFILE"}
    started = time.monotonic()
    refused = _cli(wrong, "topics", "create", "--timeout", "3")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert time.monotonic() - started < 20  # --timeout bounds it (not the client's own 30 s)
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def _metric(text: str, name: str) -> float:
    """The sum of a metric's samples (over its labels) in an exposition."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + " ", name + "{"))
    )


def _assert_worker_metrics(port: int) -> None:
    """What users of stream processors look for on a worker's /metrics, all present."""
    status, text = _get(port, "/metrics")
    assert status == 200
    text = str(text)
    assert 'tierstream_consumer_lag{partition="0"' in text
    assert _metric(text, "tierstream_consumer_lag") == 0  # everything produced is applied
    assert _metric(text, "tierstream_rebalances_total") >= 1
    assert _metric(text, "tierstream_owned_shards") == 2
    assert "tierstream_outbox_depth{" in text
    assert _metric(text, "tierstream_redis_commit_seconds_count") >= 1
    assert _metric(text, "tierstream_event_to_change_seconds_count") >= 1
    assert "tierstream_timer_lateness_seconds_count" in text
    assert _metric(text, "process_resident_memory_bytes") > 0
    assert _metric(text, "process_cpu_seconds_total") > 0
    # Offsets reach the group KAFKA_COMMIT_LAG (3 s) after Redis: wait for the first.
    deadline = time.monotonic() + 30
    while _metric(text, "tierstream_kafka_commit_seconds_count") < 1:
        assert time.monotonic() < deadline, "no offset commit measured"
        time.sleep(0.5)
        text = str(_get(port, "/metrics")[1])


def _expected(events_shifted: list[Any]) -> dict[str, dict[str, Any]]:
    scorer = Scorer(load_scoring_config(None))
    result = replay(
        events_shifted, scorer, as_of=datetime.now(UTC), emit=lambda c: None, stats=ReplayStats()
    )
    return {cid: result.scorer.record(state) for cid, state in result.states.items()}


def test_worker_over_sasl_ssl_and_redis_tls_with_auth(
    secured_kafka: SecuredKafka,
    secured_redis: SecuredRedis,
    first_purchases: tuple[Path, list[Any]],
    tmp_path: Path,
) -> None:
    env = _env(secured_kafka, secured_redis, "SASL_SSL")
    assert _cli(env, "topics", "create").returncode == 0
    api_port = free_port()
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(  # our own CLI
        [sys.executable, "-m", "tierstream.cli", "worker", "--loglevel", "warning"],
        cwd=ROOT,
        env={**env, "TIERSTREAM_API_PORT": str(api_port)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        source, events = first_purchases
        produced = _cli(
            env, "produce", str(source), "--format", "jsonl", "--shift-to-now", "--quiet"
        )
        assert produced.returncode == 0, produced.stderr
        shifted = shift_days(events, days_to_now(events))
        assert f"shifted by {days_to_now(events):,} days" in produced.stderr, produced.stderr

        deadline = time.monotonic() + 120
        applied = 0
        while time.monotonic() < deadline and worker.poll() is None:
            try:
                status, text = _get(api_port, "/metrics")
            except OSError:
                status, text = 0, ""
            if status == 200:
                applied = sum(
                    float(line.split()[-1])
                    for line in str(text).splitlines()
                    if line.startswith('tierstream_store_events_total{outcome="applied"}')
                )
                if applied >= EVENTS:
                    break
            time.sleep(0.5)
        assert applied == EVENTS, (applied, (tmp_path / "worker.log").read_text()[-3000:])
        health = _wait_for(api_port, "/healthz", 200)
        assert health["kafka"]["ok"] and health["redis"]["ok"], health
        _assert_worker_metrics(api_port)

        exported = tmp_path / "state.jsonl"
        done = _cli(env, "export", "--state-out", str(exported))
        assert done.returncode == 0, done.stderr
        found = {
            record["customer_id"]: record
            for record in map(json.loads, exported.read_text().splitlines())
        }
        expected = _expected(shifted)
        assert found.keys() == expected.keys()
        for customer_id, record in expected.items():
            mine = found[customer_id]
            for key in ("frequency", "monetary", "recency_days", "tier", "segment", "version"):
                assert mine[key] == record[key], (customer_id, key, mine[key], record[key])
        erased_id = next(iter(expected))
        shown = _cli(env, "customer", erased_id)
        assert shown.returncode == 0 and "tier" in shown.stdout, shown.stderr
        # `erase` sends its request through the same secured listener (its client takes
        # SASL/TLS from the settings, like every other), and the worker applies it.
        erased = _cli(env, "erase", erased_id)
        assert erased.returncode == 0, erased.stderr
        assert json.loads(erased.stdout.splitlines()[-1])["customer_id"] == erased_id
        deadline = time.monotonic() + 60
        while (shown := _cli(env, "customer", erased_id)).returncode == 0:
            assert time.monotonic() < deadline, "the erasure was not applied"
            time.sleep(1)
        assert shown.returncode == 1, shown.stdout + shown.stderr
        assert "unknown customer" in shown.stdout + shown.stderr
    finally:
        _stop(worker)
        log.close()
