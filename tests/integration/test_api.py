"""The HTTP API over real Redis (and Kafka for health and lag), with every CDNOW customer.

The states and tier changes come from the in-process CDNOW replay (as of 1998-07-01),
committed into Redis with their history and tallies, as the worker's commits write them.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from scoring.state import CustomerState
from streams.metrics import Metrics
from streams.processor import StepResult
from tests.api_schema import assert_valid
from tests.integration.api_support import Client, Served, cdnow, commit_states, free_port
from tests.integration.helpers import FreshTopics
from tierstream.api import create_api
from tierstream.openapi import DOCS_COPY, OPENAPI, render
from tierstream.settings import Settings
from tierstream.stores import Batch, decode_history, history_entry
from tierstream.stores.redis import RedisStore

PARTITIONS = 4
EXTRA_FIELDS = {"e", "why", "pending_changes", "history", "behaviour"}
# lifetime value: tests/integration/test_kpis_api_cli.py checks them
EXTRA_FIELDS |= {"p_alive", "clv_12m", "clv_model_version"}


def settings_for(kafka_bootstrap: str, **overrides) -> Settings:
    # Event clock: a customer is shown as of its own clock (the replay's 1998-07-01).
    return Settings(
        kafka_bootstrap=kafka_bootstrap, partitions=PARTITIONS, clock="event", **overrides
    )


def make_store(redis_url: str, **options) -> RedisStore:
    store = RedisStore(
        redis_url, partitions=PARTITIONS, namespace=f"api{uuid.uuid4().hex[:8]}", **options
    )
    store.wipe()
    return store


@pytest.fixture(scope="module")
def replayed():
    return cdnow()


@pytest.fixture(scope="module")
def cdnow_store(redis_url, replayed):
    store = make_store(redis_url)
    counts = {"applied": 69_659, "dead_letter:bad_json": 3}
    commit_states(store, replayed.states.values(), replayed.changes, counts)
    yield store
    store.wipe()
    store.close()


@pytest.fixture(scope="module")
def served(cdnow_store, replayed, kafka_bootstrap):
    app = create_api(cdnow_store, replayed.scorer, settings_for(kafka_bootstrap))
    with Served(app) as server:
        yield server


@pytest.fixture
def client(served):
    c = Client(served.port)
    yield c
    c.close()


def sample_ids(replayed, n: int) -> list[str]:
    ids = sorted(replayed.states)
    return ids[:: len(ids) // n][:n]


# ------------------------------------------------------------------ customers


def test_customer_lookup_is_the_state_record_why_and_recent_changes(client, replayed):
    scorer = replayed.scorer
    changes_of: dict[str, list] = {}
    for change in replayed.changes:
        changes_of.setdefault(change.customer_id, []).append(change)
    for customer_id in sample_ids(replayed, 60):
        state = replayed.states[customer_id]
        status, body = client.customer(customer_id)
        assert status == 200, body
        assert {k: v for k, v in body.items() if k not in EXTRA_FIELDS} == scorer.record(state)
        assert body["why"] == scorer.explain(state)
        assert body["e"] == state.scores.e
        assert body["pending_changes"] == 0
        latest = list(reversed(changes_of[customer_id]))[:5]
        assert body["history"] == [
            decode_history(customer_id, history_entry(change)) for change in latest
        ]
        assert body["history"][0]["version"] == body["version"] == state.version
        assert body["history"][0]["new_tier"] == body["tier"]
        assert "behaviour" not in body  # no segment model published in this namespace


def test_unknown_customer_is_404_with_a_json_body(client):
    status, body = client.customer("no-such-customer")
    assert status == 404
    assert body == {"error": "unknown customer", "customer_id": "no-such-customer"}
    status, body = client.customer("客户/with slash")  # any valid id: percent-encoded
    assert (status, body["customer_id"]) == (404, "客户/with slash")
    status, body = client.customer("x" * 256)
    assert status == 404


@pytest.mark.parametrize(
    ("customer_id", "problem"),
    [
        ("", "customer id is empty"),
        ("x" * 257, "customer id is longer than 256 characters"),
        ("a\x00b", "customer id contains control characters"),
        ("tab\there", "customer id contains control characters"),
        ("line\nbreak", "customer id contains control characters"),
    ],
)
def test_ids_that_break_the_event_contract_are_400(client, customer_id, problem):
    status, body = client.customer(customer_id)
    assert status == 400
    assert body == {"error": problem, "customer_id": customer_id}


def test_as_of_moves_the_view_forward_but_not_back(client, replayed):
    customer_id = sample_ids(replayed, 1)[0]
    state = replayed.states[customer_id]
    status, body = client.get(f"/customers/{customer_id}?as_of=1999-07-01")[:2]
    assert status == 200
    assert body["as_of"] == "1999-07-01"
    expected = replayed.scorer.record(state, datetime(1999, 7, 1, tzinfo=UTC))
    assert body["recency_days"] == expected["recency_days"]
    assert body["tier"] == expected["tier"] and body["version"] == expected["version"]
    assert body["pending_changes"] == expected["version"] - state.version
    status, body = client.get(f"/customers/{customer_id}?as_of=1998-01-01")[:2]
    assert status == 400 and body["scored_until"] == "1998-07-01"
    assert client.get(f"/customers/{customer_id}?as_of=soon")[0] == 400
    # Near the end of the calendar the core's day arithmetic overflowed (a 500 for the
    # last one, before); the others answered with recency in the millions of days.
    for far in ("9999-12-31", "9999-12-31T23:59:59%2B00:00", "9999-12-31T23:59:59-05:00"):
        status, body = client.get(f"/customers/{customer_id}?as_of={far}")[:2]
        assert status == 400 and "outside" in body["detail"], (far, body)


# ---------------------------------------------------------------- sizes, flows


def test_tier_and_segment_sizes_count_every_customer(client, replayed):
    states = replayed.states.values()
    status, body, _ = client.get("/tiers")
    assert status == 200
    assert body["customers"] == len(replayed.states) == 23_570
    assert [row["name"] for row in body["tiers"]] == ["VIP", "A", "B", "C"]
    assert {row["name"]: row["customers"] for row in body["tiers"]} == Counter(
        s.tier for s in states
    )
    assert body["method"] == "scan" and body["max_age_seconds"] == 5.0
    status, body, _ = client.get("/segments")
    assert status == 200
    sizes = {row["name"]: row["customers"] for row in body["segments"]}
    expected = Counter(s.segment for s in states)
    assert {k: v for k, v in sizes.items() if v} == expected
    assert body["segments"][0]["name"] == "Champions"
    assert len(sizes) == 11  # every configured segment, empty ones too


def test_sizes_are_reused_then_refreshed(redis_url, kafka_bootstrap, replayed):
    store = make_store(redis_url)
    ids = sample_ids(replayed, 10)
    commit_states(store, [replayed.states[i] for i in ids])
    app = create_api(store, replayed.scorer, settings_for(kafka_bootstrap, sizes_ttl=0.5))
    try:
        with Served(app) as server:
            client = Client(server.port)
            assert client.get("/tiers")[1]["customers"] == 10
            commit_states(store, [CustomerState("newcomer")])
            assert client.get("/tiers")[1]["customers"] == 10  # reused within the TTL
            deadline = time.monotonic() + 10
            while client.get("/tiers")[1]["customers"] != 11:
                assert time.monotonic() < deadline, "sizes never refreshed"
                time.sleep(0.1)
            body = client.get("/tiers")[1]
            assert body["unplaced"] == 1  # a customer with no purchase has no tier
            client.close()
    finally:
        store.wipe()
        store.close()


def test_flows_are_the_committed_totals(client, replayed):
    status, body, _ = client.get("/flows")
    assert status == 200
    changes = replayed.changes
    tier_flows = Counter(
        (c.previous_tier, c.new_tier) for c in changes if c.previous_tier != c.new_tier
    )
    assert {(f["from"], f["to"]): f["changes"] for f in body["tier_flows"]} == tier_flows
    segment_flows = Counter(
        (c.previous_segment, c.new_segment) for c in changes if c.previous_segment != c.new_segment
    )
    assert {(f["from"], f["to"]): f["changes"] for f in body["segment_flows"]} == segment_flows
    assert body["changes_by_cause"] == Counter(c.cause for c in changes)
    assert body["totals"] == {"changes": len(changes), "dead_letters": 3, "events": 69_659}
    assert body["dead_letters_by_kind"] == {"bad_json": 3}
    assert body["tiers"] == ["VIP", "A", "B", "C"]


def test_model_is_null_until_a_snapshot_is_published(redis_url, kafka_bootstrap, replayed):
    from models.snapshot import Behaviour, BehaviourSnapshot

    store = make_store(redis_url)
    ids = sample_ids(replayed, 5)
    commit_states(store, [replayed.states[i] for i in ids])
    try:
        with Served(create_api(store, replayed.scorer, settings_for(kafka_bootstrap))) as server:
            client = Client(server.port)
            assert client.get("/model")[1] == {"model": None}
            client.close()
        snapshot = BehaviourSnapshot(
            version=3,
            created_at=datetime(2025, 1, 1, tzinfo=UTC),
            feature_names=("recency", "frequency"),
            mean=(1.0, 2.0),
            scale=(1.0, 1.0),
            behaviours=(
                Behaviour(0, "active", (0.5, 3.0), 0.4, 0.2),
                Behaviour(1, "dormant", (2.0, 1.0), 0.6, 0.3),
            ),
        )
        store.set_meta("segments_snapshot", snapshot.to_bytes())
        app = create_api(store, replayed.scorer, settings_for(kafka_bootstrap))
        with Served(app) as server:
            client = Client(server.port)
            status, body, _ = client.get("/model")
            assert body == {"model": snapshot.to_dict()}
            assert_valid("Model", body)
            status, body = client.customer(ids[0])
            assert status == 200
            assert_valid("Customer", body)
            assert body["behaviour"]["model_version"] == 3
            assert body["behaviour"]["label"] in {"active", "dormant"}
            # behaviour_id, and segment_id its deprecated first name: the same id
            assert body["behaviour"]["behaviour_id"] in {0, 1}
            assert body["behaviour"]["segment_id"] == body["behaviour"]["behaviour_id"]
            client.close()
    finally:
        store.wipe()
        store.close()


# ---------------------------------------------------------------- health, auth


def test_healthz_is_200_when_redis_and_kafka_answer(client):
    status, body, _ = client.get("/healthz")
    assert status == 200
    assert body["status"] == "ok"
    assert body["redis"]["ok"] and body["kafka"]["ok"]
    assert "broker" in body["kafka"]["detail"]


def test_healthz_is_503_when_kafka_is_down(cdnow_store, replayed):
    closed = f"127.0.0.1:{free_port()}"
    app = create_api(cdnow_store, replayed.scorer, settings_for(closed))
    with Served(app) as server:
        client = Client(server.port)
        started = time.monotonic()
        status, body, _ = client.get("/healthz")
        assert time.monotonic() - started < 3
        assert status == 503
        assert body["status"] == "unavailable"
        assert body["redis"]["ok"] is True
        assert body["kafka"]["ok"] is False and body["kafka"]["detail"]
        assert_valid("Health", body)
        # Customers are still served: Redis is what lookups need.
        assert client.customer(sample_ids(replayed, 1)[0])[0] == 200
        client.close()


def test_healthz_and_lookups_report_503_when_redis_is_down(kafka_bootstrap, replayed):
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", partitions=PARTITIONS)
    app = create_api(store, replayed.scorer, settings_for(kafka_bootstrap))
    with Served(app) as server:
        client = Client(server.port)
        status, body, _ = client.get("/healthz")
        assert status == 503
        assert body["redis"]["ok"] is False and body["kafka"]["ok"] is True
        assert_valid("Health", body)
        status, body = client.customer("00001")
        assert status == 503 and body["error"] == "state store unavailable"
        assert_valid("Error", body)
        status, body, _ = client.get("/tiers")
        assert status == 503 and body["error"] == "state store unavailable"
        client.close()
    store.close()


def test_a_token_protects_every_route_but_healthz_and_the_page(
    cdnow_store, replayed, kafka_bootstrap
):
    settings = settings_for(kafka_bootstrap, api_token="s3cret")
    with Served(create_api(cdnow_store, replayed.scorer, settings)) as server:
        client = Client(server.port)
        customer = "/customers/" + quote(sample_ids(replayed, 1)[0])
        for path in [customer, "/tiers", "/segments", "/flows", "/model", "/metrics"]:
            status, body, headers = client.get(path)
            assert status == 401, path
            assert body["error"] == "unauthorized"
            assert headers["WWW-Authenticate"] == 'Bearer realm="tierstream"'
            assert_valid("Error", body)
            assert client.get(path, token="wrong")[0] == 401
            assert client.get(path, token="s3cret")[0] == 200, path
        assert client.get("/openapi.json")[0] == 401
        assert client.get("/customers/nobody")[0] == 401  # no hint whether it exists
        assert client.get("/healthz")[0] == 200
        assert client.get("/")[0] == 200  # static page; it asks for the token
        client.close()


# -------------------------------------------------------------------- metrics


def test_metrics_text_parses_and_reports_lag(
    redis_url, kafka_bootstrap, fresh_topics: FreshTopics, replayed
):
    topics = fresh_topics({"purchases": PARTITIONS, "engagements": PARTITIONS})
    store = make_store(redis_url)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        for _ in range(7):
            producer.send(topics["purchases"], key=b"k", value=b"{}", partition=1)
        producer.flush(timeout=30)
    finally:
        producer.close()
    store.commit(store.acquire(1), Batch(offsets={topics["purchases"]: 5}))
    commit_states(store, [replayed.states[i] for i in sample_ids(replayed, 20)])
    metrics = Metrics()
    result = StepResult()
    result.counts.update({"applied": 4, "duplicate": 1, "dead_letter:bad_json": 2})
    result.changes.extend(replayed.changes[:3])
    metrics.observe_step(1, 0.004, result)
    metrics.observe_publish(5)
    settings = settings_for(
        kafka_bootstrap,
        topic_purchases=topics["purchases"],
        topic_engagements=topics["engagements"],
    )
    try:
        with Served(create_api(store, replayed.scorer, settings, metrics)) as server:
            client = Client(server.port)
            client.get("/tiers")  # sizes are exposed once counted
            status, text, headers = client.get("/metrics")
            assert status == 200
            assert headers["Content-Type"].startswith("text/plain; version=")
            client.close()
    finally:
        store.wipe()
        store.close()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def value(name, **labels):
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("tierstream_consumer_lag", topic=topics["purchases"], partition="1") == 2
    assert value("tierstream_consumer_lag", topic=topics["purchases"], partition="0") == 0
    assert value("tierstream_consumer_lag", topic=topics["engagements"], partition="3") == 0
    assert value("tierstream_applied_offset", topic=topics["purchases"], partition="1") == 5
    assert value("tierstream_up", service="redis") == 1
    assert value("tierstream_up", service="kafka") == 1
    assert value("tierstream_redis_ping_seconds_count") >= 1
    assert sum(v for (n, _), v in samples.items() if n == "tierstream_customers_by_tier") == 20
    # the worker's own metrics, rendered by the API it serves
    assert value("tierstream_events_total", outcome="applied") == 4
    assert value("tierstream_events_total", outcome="dead_letter") == 2
    assert value("tierstream_tier_changes_total", cause=replayed.changes[0].cause) >= 1
    assert value("tierstream_batch_size_count", kind="input") == 1
    assert value("tierstream_step_seconds_sum", kind="input") == pytest.approx(0.004)
    assert value("tierstream_published_total") == 5


def test_store_totals_are_exposed_as_counters(client):
    status, text, _ = client.get("/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    events = {s.labels["outcome"]: s.value for s in families["tierstream_store_events"].samples}
    assert events["applied"] == 69_659
    dead = families["tierstream_store_dead_letters"].samples
    assert [(s.labels["kind"], s.value) for s in dead] == [("bad_json", 3)]
    flows = families["tierstream_store_tier_flows"].samples
    first = [s.value for s in flows if s.labels == {"from_tier": "none", "to_tier": "B"}]
    assert first == [23_506]  # first purchases placing customers in tier B


# -------------------------------------------------------------------- openapi


def test_openapi_document_is_served_and_matches_the_docs_copy(client):
    status, body, _ = client.get("/openapi.json")
    assert status == 200
    assert body == OPENAPI
    assert body["openapi"].startswith("3.1")
    assert DOCS_COPY.read_text(encoding="utf-8") == render(), (
        "docs/openapi.json is stale: run `python -m tierstream.openapi`"
    )
    served_paths = {"/customers/{customer_id}", "/tiers", "/segments", "/flows", "/model", "/kpis"}
    served_paths.add("/customers/{customer_id}/export")
    served_paths |= {"/customers/{customer_id}/tier", "/customers/lookup"}
    served_paths |= {"/tiers/{tier}/members", "/segments/{segment}/members"}
    served_paths.add("/behaviours/{label}/members")
    served_paths.add("/accounts/{account_id}")
    assert served_paths | {"/healthz", "/metrics", "/openapi.json", "/"} == set(body["paths"])


def test_responses_validate_against_the_openapi_schemas(client, replayed):
    check = assert_valid
    check("Customer", client.customer(sample_ids(replayed, 1)[0])[1])
    check("Error", client.customer("nobody")[1])
    check("Error", client.customer("")[1])
    check("Sizes", client.get("/tiers")[1])
    check("Sizes", client.get("/segments")[1])
    check("Flows", client.get("/flows")[1])
    check("Model", client.get("/model")[1])
    check("Health", client.get("/healthz")[1])
    check("Error", client.get("/no/such/route")[1])
    check("Error", client.get("/kpis?by=nothing")[1])
    check("Error", client.get("/customers/nobody/export")[1])
    check("CustomerExport", client.get(f"/customers/{sample_ids(replayed, 1)[0]}/export")[1])


# ------------------------------------------------------------ inside a worker


def test_a_faust_worker_serves_the_api(cdnow_store, replayed, kafka_bootstrap, tmp_path: Path):
    import faust

    from tierstream.serve import attach_api

    app = faust.App(
        f"api-test-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{kafka_bootstrap}",
        store="memory://",
        web_enabled=False,
        datadir=str(tmp_path / "faust-data"),
    )
    port = free_port()
    web_app = create_api(cdnow_store, replayed.scorer, settings_for(kafka_bootstrap))
    attach_api(app, web_app, "127.0.0.1", port)

    async def scenario() -> tuple[int, dict]:
        await app.start()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while True:
                try:
                    return await loop.run_in_executor(None, lookup)
                except OSError:
                    assert loop.time() < deadline, "the worker never served the API"
                    await asyncio.sleep(0.2)
        finally:
            await app.stop()

    def lookup() -> tuple[int, dict]:
        client = Client(port)
        try:
            return client.customer(sample_ids(replayed, 1)[0])
        finally:
            client.close()

    status, body = asyncio.run(scenario())
    assert status == 200 and body["tier"]
    with pytest.raises(OSError):  # stopped with the app
        Client(port).get("/healthz")


# -------------------------------------------------------------------- latency


@pytest.fixture(scope="module")
def serve_process(cdnow_store, redis_url, kafka_bootstrap):
    """``python -m tierstream.serve`` (what ``tierstream serve`` runs) over the CDNOW states."""
    port = free_port()
    env = {
        **os.environ,
        "TIERSTREAM_REDIS_URL": redis_url,
        "TIERSTREAM_REDIS_NAMESPACE": cdnow_store.namespace,
        "TIERSTREAM_PARTITIONS": str(PARTITIONS),
        "TIERSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "TIERSTREAM_CLOCK": "event",
        "TIERSTREAM_API_PORT": str(port),
    }
    process = subprocess.Popen(  # our own module
        [sys.executable, "-m", "tierstream.serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client = Client(port)
                status = client.get("/healthz")[0]
                client.close()
                break
            except OSError:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "tierstream serve did not start"
                time.sleep(0.2)
        assert status == 200
        yield port
    finally:
        process.terminate()
        process.wait(10)


def test_lookup_latency_of_tierstream_serve_on_loopback(serve_process, replayed):
    """2,000 sequential lookups of random CDNOW customers over one keep-alive connection."""
    client = Client(serve_process)
    ids = list(replayed.states)
    rng = random.Random(7)
    for customer_id in rng.sample(ids, 50):  # warm up the connection and the thread pool
        client.customer(customer_id)
    timings = []
    for customer_id in (rng.choice(ids) for _ in range(2000)):
        started = time.perf_counter()
        status, body = client.customer(customer_id)
        timings.append(time.perf_counter() - started)
        assert status == 200 and body["customer_id"] == customer_id
    client.close()
    timings.sort()
    p50, p99 = timings[len(timings) // 2], timings[int(len(timings) * 0.99)]
    summary = {
        "requests": len(timings),
        "p50_ms": round(p50 * 1000, 2),
        "p90_ms": round(timings[int(len(timings) * 0.9)] * 1000, 2),
        "p99_ms": round(p99 * 1000, 2),
        "max_ms": round(timings[-1] * 1000, 2),
    }
    print(f"\nGET /customers/{{id}}, tierstream serve on loopback: {json.dumps(summary)}")
    # The goal is p99 < 5 ms (docs/api.md has the measurement); the bound here is loose
    # so that a 2-core CI machine busy with other work does not fail on scheduling noise.
    assert p99 < 0.05


def test_the_api_adopts_published_quintile_cut_points(redis_url, kafka_bootstrap, replayed):
    from scoring.engine import Scorer
    from scoring.scores import Thresholds
    from tierstream.api import STATE_KEY

    config = replayed.scorer.config
    quintiles = config.model_copy(
        update={"scores": config.scores.model_copy(update={"method": "quintiles"})}
    )
    store = make_store(redis_url)
    customer_id = sample_ids(replayed, 1)[0]
    commit_states(store, [replayed.states[customer_id]])
    fixed = Thresholds.fixed(quintiles)
    published = Thresholds(
        fixed.recency, fixed.frequency, fixed.monetary, fixed.engagement, version=4
    )
    store.set_meta("thresholds", json.dumps(published.to_dict()).encode())
    app = create_api(store, Scorer(quintiles), settings_for(kafka_bootstrap))
    try:
        with Served(app) as server:
            client = Client(server.port)
            assert client.customer(customer_id)[0] == 200
            client.close()
        assert app[STATE_KEY].scorer.thresholds.version == 4
    finally:
        store.wipe()
        store.close()


# ------------------------------------------------------------------ audiences


def test_members_pages_list_every_customer_of_a_tier_once(client, replayed):
    from urllib.parse import quote

    tier = replayed.scorer.config.tiers.levels[0].name
    expected = sorted((cid for cid, s in replayed.states.items() if s.tier == tier), key=str.encode)
    assert expected
    listed, cursor, size = [], None, None
    while True:
        path = f"/tiers/{quote(tier)}/members?limit=1000"
        if cursor is not None:
            path += f"&cursor={cursor}"
        status, body, _ = client.get(path)
        assert status == 200, body
        assert_valid("Members", body)
        size = body["size"]
        listed += body["members"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert listed == expected and size == len(expected)

    segment = next(s.segment for s in replayed.states.values() if s.segment is not None)
    status, body, _ = client.get(f"/segments/{quote(segment)}/members?limit=5")
    members = sorted(
        (c for c, s in replayed.states.items() if s.segment == segment), key=str.encode
    )
    assert status == 200 and body["members"] == members[:5] and body["size"] == len(members)
    status, body, _ = client.get(
        f"/segments/{quote(segment)}/members?limit=5&cursor={body['next_cursor']}"
    )
    assert body["members"] == members[5:10]
    status, body, _ = client.get("/behaviours/anything/members")
    assert status == 200 and body["members"] == [] and body["next_cursor"] is None


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/tiers/NoSuchTier/members", 404),
        ("/segments/NoSuchSegment/members", 404),
        ("/tiers/{tier}/members?limit=0", 400),
        ("/tiers/{tier}/members?limit=abc", 400),
        ("/tiers/{tier}/members?limit=1001", 400),
        ("/tiers/{tier}/members?cursor=%%%", 400),
        ("/tiers/{tier}/members?cursor=_w", 400),  # not UTF-8
    ],
)
def test_members_routes_refuse_bad_requests_with_one_line(client, replayed, path, status):
    from urllib.parse import quote

    tier = quote(replayed.scorer.config.tiers.levels[0].name)
    got, body, _ = client.get(path.format(tier=tier))
    assert got == status and isinstance(body["error"], str) and "\n" not in body["error"]
    assert_valid("Error", body)


def test_sizes_from_the_kept_counts_equal_the_scan(replayed, kafka_bootstrap):
    """A store marked as keeping its audience sizes answers GET /tiers and /segments from
    them (method "counts"), with the numbers a scan of the same states gives."""
    from tierstream.stores import MemoryStore

    store = MemoryStore(partitions=4)
    commit_states(store, replayed.states.values(), replayed.changes)
    app = create_api(store, replayed.scorer, settings_for(kafka_bootstrap))
    with Served(app) as server:
        c = Client(server.port)
        scanned = {path: c.get(path)[1] for path in ("/tiers", "/segments")}
        store.rebuild_audiences()  # marks the store
    app = create_api(store, replayed.scorer, settings_for(kafka_bootstrap))
    with Served(app) as server:
        c = Client(server.port)
        for path, before in scanned.items():
            status, body, _ = c.get(path)
            assert status == 200 and before["method"] == "scan" and body["method"] == "counts"
            for field in ("customers", "unplaced", "tiers", "segments"):
                assert body.get(field) == before.get(field), (path, field)
        c.close()
