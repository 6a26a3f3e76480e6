"""The streaming worker on real Kafka and Redis: exact state, nothing lost, nothing twice."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.pipeline import (
    ROOT,
    assert_applied_exactly_once,
    assert_chains_consistent,
    assert_exact,
    assert_totals_exact,
    subset,
)


@pytest.mark.acceptance  # the whole CDNOW history, checked customer by customer
def test_cdnow_history_through_kafka_equals_the_batch_reference(
    make_pipeline, cdnow_events, cdnow_frame
):
    pipeline = make_pipeline()
    assert pipeline.produce(cdnow_events) == 69_659
    started = time.monotonic()
    pipeline.start_worker()
    pipeline.wait_applied(timeout=400)
    elapsed = time.monotonic() - started
    pipeline.wait_quiet()
    print(f"\nCDNOW through Kafka: {len(cdnow_events) / elapsed:,.0f} events/s incl. start-up")
    assert_exact(pipeline, cdnow_frame, {e.customer_id for e in cdnow_events})
    changes = pipeline.changes()
    duplicates = assert_chains_consistent(changes, pipeline.store)
    assert duplicates == 0  # a clean run publishes each change once
    assert_totals_exact(pipeline, len(cdnow_events), changes)


def test_kill9_mid_stream_loses_nothing_and_counts_nothing_twice(
    make_pipeline, cdnow_events, cdnow_frame
):
    events = subset(cdnow_events, "04000")
    pipeline = make_pipeline()
    pipeline.produce(events)
    worker = pipeline.start_worker()
    for fraction in (0.2, 0.45, 0.7):
        pipeline.wait_applied(fraction)
        pipeline.kill(worker)  # SIGKILL: no chance to commit or flush anything
        worker = pipeline.start_worker()
    assert_applied_exactly_once(pipeline, cdnow_frame, events)


def test_two_workers_share_partitions_and_survive_losing_one(
    make_pipeline, cdnow_events, cdnow_frame
):
    events = subset(cdnow_events, "03000")
    pipeline = make_pipeline()
    pipeline.produce(events)
    first = pipeline.start_worker()
    pipeline.start_worker()
    pipeline.wait_applied(0.35)
    pipeline.kill(first)
    pipeline.wait_applied(1.0)
    pipeline.wait_quiet()
    assert_exact(pipeline, cdnow_frame, {e.customer_id for e in events})
    assert_chains_consistent(pipeline.changes(), pipeline.store)


MALFORMED = [
    (b"c-bad", b"{not json"),
    (b"c-bad", b"\xff\xfe\xfd"),
    (b"c-bad", b"[1, 2, 3]"),
    (b"c-bad", json.dumps({"event_id": "x1", "customer_id": "c-bad"}).encode()),
    (
        b"c-bad",
        json.dumps(
            {
                "event_id": "x2",
                "customer_id": "c-bad",
                "occurred_at": "2024-01-01T00:00:00",
                "amount": "5",
                "currency": "USD",
            }
        ).encode(),
    ),
    (
        b"c-bad",
        json.dumps(
            {
                "event_id": "x3",
                "customer_id": "c-bad",
                "occurred_at": "1997-01-05T00:00:00Z",
                "amount": "NaN",
                "currency": "USD",
            }
        ).encode(),
    ),
    (
        b"c-bad",
        json.dumps(
            {
                "event_id": "x4",
                "customer_id": "c-bad",
                "occurred_at": "1997-01-05T00:00:00Z",
                "amount": "5",
                "currency": "XXX",
            }
        ).encode(),
    ),
    (
        b"someone-else",
        json.dumps(
            {
                "event_id": "x5",
                "customer_id": "c-bad",
                "occurred_at": "1997-01-05T00:00:00Z",
                "amount": "5",
                "currency": "USD",
            }
        ).encode(),
    ),
    (b"c-bad", None),
    (b"c-bad", b"x" * 100_000),
]


def test_malformed_messages_land_in_dead_letters_and_valid_totals_hold(
    make_pipeline, cdnow_events, cdnow_frame
):
    events = subset(cdnow_events, "01000")
    pipeline = make_pipeline()
    half = len(events) // 2
    pipeline.produce(events[:half])
    pipeline.produce_raw("purchases", MALFORMED)
    pipeline.produce_raw("engagements", [(b"c-bad", b"{}"), (b"c-bad", b"\x00\x01")])
    pipeline.produce(events[half:])
    worker = pipeline.start_worker()
    pipeline.wait_applied(1.0)
    pipeline.wait_quiet()
    assert worker.poll() is None, "the worker must stay up"
    letters = [json.loads(value) for _, value in pipeline.read("dead-letters")]
    assert len(letters) == len(MALFORMED) + 2
    kinds = {letter["error_kind"] for letter in letters}
    assert {
        "not_json",
        "not_utf8",
        "not_object",
        "invalid_event",
        "unknown_currency",
        "key_mismatch",
        "empty",
        "oversized",
    } <= kinds
    for letter in letters:
        assert letter["source_topic"] in (
            pipeline.topics["purchases"],
            pipeline.topics["engagements"],
        )
        assert letter["source_offset"] >= 0 and letter["error"]
        base64.b64decode(letter["payload_base64"])
    raw_payloads = {base64.b64decode(letter["payload_base64"]) for letter in letters}
    assert b"{not json" in raw_payloads
    assert pipeline.store.get("c-bad") is None
    assert_exact(pipeline, cdnow_frame, {e.customer_id for e in events})


def test_services_restarting_mid_stream_pause_and_resume_without_loss(
    make_pipeline, cdnow_events, cdnow_frame
):
    events = subset(cdnow_events, "03000")
    pipeline = make_pipeline()
    pipeline.produce(events)
    worker = pipeline.start_worker()
    pipeline.wait_applied(0.3)
    subprocess.run(["bash", "infra/services.sh", "restart-redis"], cwd=ROOT, check=True)
    pipeline.wait_applied(0.6)
    subprocess.run(["bash", "infra/services.sh", "restart-kafka"], cwd=ROOT, check=True)
    pipeline.wait_applied(1.0, timeout=300)
    pipeline.wait_quiet(timeout=120)
    assert worker.poll() is None, f"the worker must ride out the restarts\n{pipeline.logs()}"
    assert_exact(pipeline, cdnow_frame, {e.customer_id for e in events})
    assert_chains_consistent(pipeline.changes(), pipeline.store)


def test_inactivity_demotion_is_emitted_by_the_timer_within_seconds(make_pipeline, tmp_path: Path):
    midnight = datetime(2026, 1, 2, tzinfo=UTC)
    pipeline = make_pipeline(
        env={
            "TIERSTREAM_CLOCK": "wall",
            "TIERSTREAM_CLOCK_START": (midnight - timedelta(seconds=6)).isoformat(),
        }
    )
    purchase = {
        "event_id": "quiet-1",
        "customer_id": "quiet",
        "amount": "20.00",
        "currency": "USD",
        "occurred_at": "2025-12-02T12:00:00+00:00",
    }
    pipeline.produce_raw("purchases", [(b"quiet", json.dumps(purchase).encode())])
    pipeline.start_worker()
    deadline = time.monotonic() + 90
    changes: list[dict] = []
    while time.monotonic() < deadline:
        changes = [c for c in pipeline.changes() if c["cause"] == "inactivity"]
        if changes:
            break
        time.sleep(0.5)
    assert changes, f"no inactivity change\n{pipeline.logs()}"
    (change,) = changes
    assert change["occurred_at"] == midnight.isoformat()
    assert change["previous_tier"] == "B" and change["new_tier"] == "C"
    assert "no purchase for 31 days" in change["reason"]
    lag = datetime.fromisoformat(change["emitted_at"]) - datetime.fromisoformat(
        change["occurred_at"]
    )
    print(f"\ninactivity lag (emitted_at - threshold moment): {lag.total_seconds():.3f}s")
    assert lag < timedelta(seconds=5)


def published_version(pipeline) -> int:
    """The version of the published quintile cut points (0: none yet)."""
    from streams.worker import THRESHOLDS_META

    raw = pipeline.store.get_meta(THRESHOLDS_META)
    return int(json.loads(raw)["version"]) if raw else 0


def test_quintile_cut_points_are_published_and_applied_by_the_worker(
    make_pipeline, cdnow_events, tmp_path: Path
):
    from scoring.scores import Thresholds, raw_score
    from streams.worker import THRESHOLDS_META
    from tierstream.settings import DEFAULT_CONFIG

    config = tmp_path / "quintiles.yaml"
    config.write_text(DEFAULT_CONFIG.read_text().replace("method: fixed", "method: quintiles"))
    pipeline = make_pipeline(
        config=config,
        env={
            "TIERSTREAM_THRESHOLD_REFRESH_SECONDS": "2",
            "TIERSTREAM_THRESHOLD_CHECK_SECONDS": "0.5",
        },
    )
    pipeline.produce(subset(cdnow_events, "01500"))
    pipeline.start_worker()
    pipeline.wait_applied(1.0)
    # At least one refresh after the last event, adopted by the worker: a refresh may be
    # under way (its scan begun before the last event) when the input is all applied, so
    # the one after it. The leader adopts what it publishes at once.
    after_input = published_version(pipeline) + 2
    deadline = time.monotonic() + 60
    while published_version(pipeline) < after_input:
        assert time.monotonic() < deadline, f"no refresh after the input\n{pipeline.logs()}"
        time.sleep(0.2)
    pipeline.wait_quiet()
    published = Thresholds.from_dict(json.loads(pipeline.store.get_meta(THRESHOLDS_META)))
    assert published.version >= 1
    changes = pipeline.changes()
    assert any(c["cause"] == "threshold_update" for c in changes)
    assert_chains_consistent(changes, pipeline.store)
    scorer = pipeline.scorer.with_thresholds(published)
    for state in pipeline.store.scan():
        values = scorer.values(state, state.clock_day)
        assert state.scores.f == raw_score(values.frequency, published.frequency, True)


def test_worker_serves_every_api_endpoint_behind_its_token(make_pipeline, cdnow_events):
    """The API and dashboard served by a running worker, fed with CDNOW through Kafka."""
    import urllib.error
    import urllib.request
    from collections import Counter

    from tests.integration.api_support import free_port

    port = free_port()
    token = "s3cret"
    pipeline = make_pipeline(
        env={
            "TIERSTREAM_API_PORT": str(port),
            "TIERSTREAM_API_HOST": "127.0.0.1",
            "TIERSTREAM_API_TOKEN": token,
            "TIERSTREAM_SIZES_TTL": "0.5",
        }
    )
    events = subset(cdnow_events, "00200")
    pipeline.produce(events)
    pipeline.start_worker()
    pipeline.wait_applied(1.0)
    pipeline.wait_quiet()
    changes = pipeline.changes()
    assert_totals_exact(pipeline, len(events), changes)

    def get(path: str, auth: bool = True) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {token}"} if auth else {}
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return response.status, bytes(response.read())
            except urllib.error.HTTPError as exc:
                return exc.code, bytes(exc.read())
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def get_json(path: str, status: int = 200) -> dict:
        got, body = get(path)
        assert got == status, (path, body)
        return json.loads(body)

    # A customer: state, why, and the recent history the worker's commits recorded.
    newest = max((c for c in changes if c["customer_id"] == "00001"), key=lambda c: c["version"])
    body = get_json("/customers/00001")
    assert (body["customer_id"], body["tier"]) == ("00001", newest["new_tier"])
    assert body["why"] and body["history"][0]["event_id"] == newest["event_id"]
    assert get_json("/customers/nobody", 404)["error"] == "unknown customer"
    assert "control characters" in get_json("/customers/bad%01id", 400)["error"]
    assert "as_of" in get_json("/customers/00001?as_of=yesterday", 400)["error"]
    # Sizes, flows and the model, from the worker's Redis state and running totals.
    customers = {e.customer_id for e in events}
    tiers = get_json("/tiers")
    assert tiers["customers"] == len(customers)
    states = [pipeline.store.get(c) for c in sorted(customers)]
    assert {r["name"]: r["customers"] for r in tiers["tiers"] if r["customers"]} == Counter(
        s.tier for s in states if s is not None
    )
    assert sum(r["customers"] for r in get_json("/segments")["segments"]) == len(customers)
    flows = get_json("/flows")
    assert flows["totals"]["changes"] == len(changes)
    assert flows["totals"]["events"] == len(events)
    assert get_json("/model") == {"model": None}
    assert get_json("/healthz")["status"] == "ok"
    assert get_json("/openapi.json")["openapi"].startswith("3.1")
    status, page = get("/", auth=False)
    assert status == 200 and b"<html" in page.lower()
    # Only health and the page itself are open without the token.
    for path in ("/customers/00001", "/tiers", "/segments", "/flows", "/model", "/metrics"):
        assert get(path, auth=False)[0] == 401, path
    assert get("/healthz", auth=False)[0] == 200
    # Metrics: this worker's own counters next to the cluster-wide totals.
    status, raw = get("/metrics")
    assert status == 200
    metrics = raw.decode()
    published = [
        line for line in metrics.splitlines() if line.startswith("tierstream_published_total ")
    ]
    # a single worker, no restarts: it published every change, and nothing else did
    assert published and float(published[0].split()[1]) == len(changes)


def test_two_workers_adopt_a_published_segment_model_and_agree(make_pipeline, cdnow_events):
    """`tierstream segments` learns from Redis and publishes; both workers re-assign."""
    from models.snapshot import BehaviourSnapshot
    from tierstream.behaviours import SNAPSHOT_META, SnapshotBehaviour

    pipeline = make_pipeline(env={"TIERSTREAM_SEGMENTS_CHECK_SECONDS": "0.5"})
    events = subset(cdnow_events, "01500")
    pipeline.produce(events)
    workers = [pipeline.start_worker(), pipeline.start_worker()]
    pipeline.wait_applied(1.0)
    pipeline.wait_quiet()
    before = pipeline.changes()
    assert all(c["new_behaviour"] is None for c in before)  # no model yet

    learned = subprocess.run(  # our own CLI
        [sys.executable, "-m", "tierstream.cli", "segments", "--as-of", "1998-07-01", "--json"],
        cwd=ROOT,
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(learned.stdout)["version"] == 1
    snapshot = BehaviourSnapshot.from_bytes(pipeline.store.get_meta(SNAPSHOT_META))
    deadline = time.monotonic() + 60
    while any(
        pipeline.store.get_meta(f"segments_swept:{shard}") != b"1"
        for shard in range(pipeline.partitions)
    ):
        assert time.monotonic() < deadline, f"shards not swept\n{pipeline.logs()}"
        time.sleep(0.5)
    pipeline.wait_quiet()
    assert all(worker.poll() is None for worker in workers)

    # Every customer carries the segment the published model gives their figures, whichever
    # worker owned them: the same snapshot version, the same answer.
    model = SnapshotBehaviour(snapshot)
    states = list(pipeline.store.scan())
    assert len(states) == len({e.customer_id for e in events})
    for state in states:
        assert state.clock_day is not None
        assert state.behaviour == model.assign(pipeline.scorer.values(state, state.clock_day))
    changes = pipeline.changes()
    updates = [c for c in changes if c["cause"] == "model_update"]
    assert len(updates) == len(states)  # everyone moved from "no segment" to one
    assert all(c["previous_behaviour"] is None and c["new_behaviour"] for c in updates)
    assert all("segment model v1" in c["reason"] for c in updates)
    assert_chains_consistent(changes, pipeline.store)
    assert_totals_exact(pipeline, len(events), changes)
