"""Tier-change headers, subscriptions and their delivery, with the real worker and Kafka."""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from streams.change_headers import HEADER_FIELDS, header_dict
from tests.integration.api_support import free_port
from tests.integration.pipeline import ROOT, subset
from tests.integration.receiver import Receiver
from tests.integration.subscribers import read_with_headers
from tierstream.settings import DEFAULT_CONFIG


def test_every_tier_change_carries_headers_that_match_its_value(make_pipeline, cdnow_events):
    pipeline = make_pipeline()
    pipeline.produce(subset(cdnow_events, "00300"))
    pipeline.start_worker()
    pipeline.wait_applied()
    pipeline.wait_quiet()
    records = read_with_headers(pipeline.bootstrap, pipeline.topics["tier-changes"])
    assert records
    for record in records:
        change, headers = json.loads(record.value), header_dict(record.headers)
        assert headers["entity"] == "customer"
        for name, field in HEADER_FIELDS:
            assert headers[name] == (change.get(field) or ""), (name, change)
    assert any(
        header_dict(r.headers)["tier"] == header_dict(r.headers)["previous_tier"] for r in records
    )


# ------------------------------------------------------------------ delivery

SECRET = b"s3cret-for-tests"


def subscriptions_config(tmp_path: Path, subscriptions: list[dict[str, Any]]) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    raw["subscriptions"] = subscriptions
    path = tmp_path / "subscriptions.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def hook(url: str, **extra: Any) -> dict[str, Any]:
    retry = {"retry_base_seconds": 0.05, "retry_cap_seconds": 0.5, "timeout_seconds": 2}
    return {"url": url, "secret_env": "TEST_HOOK_SECRET", **retry, **extra}


def start_deliver(
    pipeline,
    log: Path,
    metrics_port: int = 0,
    loglevel: str = "warning",
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # our own CLI
        [sys.executable, "-m", "tierstream.cli", "deliver", "--loglevel", loglevel]
        + ["--metrics-port", str(metrics_port)],
        cwd=ROOT,
        env={**pipeline.env, "TEST_HOOK_SECRET": SECRET.decode(), **(env or {})},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def entered_vip(change: dict[str, Any]) -> bool:
    return change["new_tier"] == "VIP" and change["previous_tier"] != "VIP"


def left_vip(change: dict[str, Any]) -> bool:
    return change["previous_tier"] == "VIP" and change["new_tier"] != "VIP"


def wait_for(condition, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what} within {timeout}s\n{log.read_text(errors='replace')[-3000:]}"
            )
        time.sleep(0.3)


def assert_in_customer_order(received: list[Any], changes: dict[str, dict[str, Any]]) -> None:
    """Per customer, the first deliveries of each change arrive in version order."""
    seen: set[str] = set()
    last_version: dict[str, int] = {}
    for request in received:
        change = json.loads(request.body)
        if change["event_id"] in seen:
            continue  # a redelivery (at least once)
        seen.add(change["event_id"])
        assert change == changes[change["event_id"]]
        assert change["version"] > last_version.get(change["customer_id"], 0)
        last_version[change["customer_id"]] = change["version"]


def test_matching_changes_reach_webhooks_and_the_derived_topic_and_nothing_else(
    make_pipeline, fresh_topics, cdnow_events, tmp_path: Path
):
    derived = fresh_topics({"vip-entered": 4})["vip-entered"]
    lost_cause: set[str] = set()  # its endpoint always fails these: they end as dead letters

    def answer(path: str, event_id: str, attempt: int) -> int:
        if path == "/entered" and event_id in lost_cause:
            return 500
        flaky = int(hashlib.sha256(event_id.encode()).hexdigest(), 16) % 3 == 0
        return 503 if flaky and attempt <= 2 else 200

    with Receiver(answer) as receiver:
        config = subscriptions_config(
            tmp_path,
            [
                {
                    "name": "vip-entered",
                    "when": {"entered_tier": "VIP"},
                    "topic": derived,
                    "webhook": hook(f"{receiver.url}/entered", max_attempts=4),
                },
                {
                    "name": "vip-left",
                    "when": {"left_tier": "VIP"},
                    "webhook": hook(f"{receiver.url}/left"),
                },
            ],
        )
        pipeline = make_pipeline(config=config)
        pipeline.produce(subset(cdnow_events, "00600"))
        pipeline.start_worker()
        pipeline.wait_applied()
        pipeline.wait_quiet()
        changes = {c["event_id"]: c for c in pipeline.changes()}
        entered = {e for e, c in changes.items() if entered_vip(c)}
        left = {e for e, c in changes.items() if left_vip(c)}
        doomed = min(changes[e]["customer_id"] for e in entered)
        lost_cause |= {e for e in entered if changes[e]["customer_id"] == doomed}
        assert entered and left and lost_cause and len(entered) < len(changes) / 10
        log = tmp_path / "deliver.log"
        metrics_port = free_port()
        deliver = start_deliver(pipeline, log, metrics_port)
        try:
            wait_for(
                lambda: (
                    {json.loads(r.body)["event_id"] for r in receiver.delivered("/entered")}
                    >= entered - lost_cause
                    and {json.loads(r.body)["event_id"] for r in receiver.delivered("/left")}
                    >= left
                ),
                120,
                "not every matching change was delivered",
                log,
            )
            wait_for(
                lambda: len(webhook_dead_letters(pipeline)) >= len(lost_cause),
                60,
                "the failing endpoint's changes were not dead-lettered",
                log,
            )
            expected_metrics = {
                ("delivered", "vip-entered"): len(entered - lost_cause),
                ("delivered", "vip-left"): len(left),
                ("dead_lettered", "vip-entered"): len(lost_cause),
                ("dead_lettered", "vip-left"): 0,
                ("to_topic", "vip-entered"): len(entered),
                ("lag", "vip-entered"): 0,
                ("lag", "vip-left"): 0,
            }
            wait_for(
                lambda: deliver_metrics(metrics_port, expected_metrics) == expected_metrics,
                30,
                f"the metrics did not reach {expected_metrics}",
                log,
            )
        finally:
            deliver.send_signal(signal.SIGTERM)
            deliver.wait(timeout=30)
        assert deliver.returncode == 0, log.read_text()
    for path, expected in (("/entered", entered - lost_cause), ("/left", left)):
        delivered = receiver.delivered(path)
        assert {json.loads(r.body)["event_id"] for r in delivered} == expected  # nothing else
        assert_in_customer_order(delivered, changes)
    asked = {"/entered": entered, "/left": left}
    for request in receiver.requests:
        change = json.loads(request.body)
        assert change["event_id"] in asked[request.path]  # failed attempts included
        assert request.signed_with(SECRET)
        assert request.headers["X-Tierstream-Event-Id"] == change["event_id"]
        assert request.headers["Content-Type"] == "application/json"
        subscription = {"/entered": "vip-entered", "/left": "vip-left"}[request.path]
        assert request.headers["X-Tierstream-Subscription"] == subscription
    retried = [r for r in receiver.requests if r.status == 503]
    assert retried  # the flaky answers were retried, with the same event id, until a 2xx
    letters = webhook_dead_letters(pipeline)
    assert {
        json.loads(base64.b64decode(d["payload_base64"]))["event_id"] for d in letters
    } == lost_cause
    assert all("HTTP 500" in d["error"] and "vip-entered" in d["error"] for d in letters)
    on_topic = read_with_headers(pipeline.bootstrap, derived)
    assert {json.loads(r.value)["event_id"] for r in on_topic} == entered
    for record in on_topic:  # same key and headers as on tier-changes
        change = json.loads(record.value)
        assert record.key == change["customer_id"].encode()
        assert header_dict(record.headers)["tier"] == "VIP"


def deliver_metrics(port: int, wanted: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """The wanted (metric, subscription) values of deliver's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    found: dict[tuple[str, str], int] = {}
    for line in text.splitlines():
        for metric, subscription in wanted:
            suffix = "" if metric == "lag" else "_total"
            if line.startswith(
                f'tierstream_deliver_{metric}{suffix}{{subscription="{subscription}"}} '
            ):
                found[(metric, subscription)] = int(float(line.rsplit(" ", 1)[1]))
    return found


def webhook_dead_letters(pipeline) -> list[dict[str, Any]]:
    letters = [json.loads(value) for _, value in pipeline.read("dead-letters")]
    return [letter for letter in letters if letter["error_kind"] == "webhook"]


def test_a_receiver_down_for_a_while_and_kill9_of_deliver_lose_nothing(
    make_pipeline, cdnow_events, tmp_path: Path
):
    port = free_port()  # nothing listens there yet: connections are refused
    url = f"http://127.0.0.1:{port}"
    config = subscriptions_config(
        tmp_path,
        [
            {
                "name": "entered",
                "when": {"entered_tier": "VIP"},
                "webhook": hook(f"{url}/entered", max_attempts=100),
            },
            {
                "name": "left",
                "when": {"left_tier": "VIP"},
                "webhook": hook(f"{url}/left", max_attempts=100),
            },
        ],
    )
    pipeline = make_pipeline(config=config)
    pipeline.produce(subset(cdnow_events, "00600"))
    pipeline.start_worker()
    log = tmp_path / "deliver.log"
    deliver = start_deliver(pipeline, log)
    pipeline.wait_applied(0.5)
    time.sleep(2)  # the endpoint is down: deliver retries (connection refused), commits nothing
    with Receiver(port=port) as receiver:
        wait_for(lambda: len(receiver.delivered("/entered")) >= 20, 120, "no deliveries", log)
        deliver.kill()  # SIGKILL mid-stream
        deliver.wait()
        deliver = start_deliver(pipeline, log)
        pipeline.wait_applied()
        pipeline.wait_quiet()
        changes = {c["event_id"]: c for c in pipeline.changes()}
        expected = {
            "/entered": {e for e, c in changes.items() if entered_vip(c)},
            "/left": {e for e, c in changes.items() if left_vip(c)},
        }
        try:
            wait_for(
                lambda: all(
                    {json.loads(r.body)["event_id"] for r in receiver.delivered(path)} >= ids
                    for path, ids in expected.items()
                ),
                120,
                "changes were lost",
                log,
            )
        finally:
            deliver.send_signal(signal.SIGTERM)
            deliver.wait(timeout=30)
        for path, ids in expected.items():
            delivered = receiver.delivered(path)
            assert {json.loads(r.body)["event_id"] for r in delivered} == ids
            assert_in_customer_order(delivered, changes)
    assert webhook_dead_letters(pipeline) == []


def test_deliver_refuses_to_start_when_a_derived_topic_does_not_exist(
    make_pipeline, unique_name, tmp_path: Path
):
    missing = unique_name("never-created")
    config = subscriptions_config(tmp_path, [{"name": "v", "topic": missing}])
    pipeline = make_pipeline(config=config)
    result = subprocess.run(  # our own CLI
        [sys.executable, "-m", "tierstream.cli", "deliver", "--loglevel", "warning"],
        cwd=ROOT,
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert f"topic(s) {missing} do not exist: run `tierstream topics create`" in " ".join(
        result.stderr.split()
    )
    assert "Traceback" not in result.stderr
