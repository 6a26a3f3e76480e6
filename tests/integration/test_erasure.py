"""Erasure end to end: CDNOW customers through Kafka, then erased by the CLI, the API and
the erasures topic (one of them across a kill -9 of the worker), and nothing of them left.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from urllib.parse import quote

import pytest

from tests.api_schema import assert_valid
from tests.integration.api_support import Client, free_port
from tests.integration.pipeline import ROOT, Pipeline
from tierstream.erasure import customer_digest, erasure_salt

TOKEN = "erasure-test-token"
# A subset of CDNOW: the point is erasure, not scale (about 3,000 events).
CUSTOMERS_BELOW = "01000"
PREFIX = "cdnow-"  # ids that cannot occur by chance inside other keys or values


@pytest.fixture
def pipeline(make_pipeline, cdnow_events):
    port = free_port()
    pipe: Pipeline = make_pipeline(
        env={"TIERSTREAM_API_PORT": str(port), "TIERSTREAM_API_TOKEN": TOKEN}
    )
    pipe.api_port = port  # type: ignore[attr-defined]
    events = [
        e.model_copy(update={"customer_id": PREFIX + e.customer_id})
        for e in cdnow_events
        if e.customer_id < CUSTOMERS_BELOW
    ]
    pipe.start_worker()
    pipe.produce(events)
    pipe.wait_applied(1.0)
    pipe.events = events  # type: ignore[attr-defined]
    return pipe


def erasure_request(customer_id: str, *, suppress: bool = False) -> bytes:
    return json.dumps(
        {
            "event_id": f"topic-{customer_id[::-1]}-{time.monotonic_ns()}",
            "customer_id": customer_id,
            "requested_at": datetime.now(UTC).isoformat(),
            "suppress": suppress,
        }
    ).encode()


def cli(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # our own CLI
        [sys.executable, "-m", "tierstream.cli", *args],
        cwd=ROOT,
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def api_call(port: int, method: str, path: str) -> tuple[int, dict]:
    client = Client(port, TOKEN)
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        client.connection.request(method, path, headers=headers)
        response = client.connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        client.close()


def wait_api(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if api_call(port, "GET", "/healthz")[0] in (200, 503):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("the worker's API did not start")


def holders_of(pipeline: Pipeline, needles: list[str]) -> dict[str, list[bytes]]:
    """needle -> every key of the test's namespace whose name or value contains it."""
    client = pipeline.store._client
    found: dict[str, list[bytes]] = defaultdict(list)
    encoded = [(n, n.encode()) for n in needles]
    for key in client.scan_iter(match=f"*{pipeline.namespace}*".encode(), count=1000):
        kind = client.type(key)
        values: list[bytes] = []
        if kind == b"string":
            values = [client.get(key) or b""]
        elif kind == b"hash":
            values = [part for pair in client.hgetall(key).items() for part in pair]
        elif kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"zset":
            values = client.zrange(key, 0, -1)
        elif kind == b"set":
            values = list(client.smembers(key))
        for needle, raw in encoded:
            if raw in key or any(raw in value for value in values):
                found[needle].append(key)
    return dict(found)


def test_erase_by_cli_api_and_topic_leaves_nothing_and_publishes_one_change(pipeline):
    port = pipeline.api_port
    ids = sorted({e.customer_id for e in pipeline.events})
    by_cli, by_api, by_topic, suppressed = ids[0], ids[1], ids[2], ids[3]
    across_kill = ids[10:30]
    erased = [by_cli, by_api, by_topic, suppressed, *across_kill]
    assert all(pipeline.store.get(cid) is not None for cid in erased)
    assert holders_of(pipeline, erased).keys() == set(erased)

    # Export before erasure: everything held, as JSON.
    wait_api(port)
    status, body = api_call(port, "GET", f"/customers/{quote(by_api, safe='')}/export")
    assert status == 200 and body["customer_id"] == by_api and body["state"]["first_purchase_at"]
    assert_valid("CustomerExport", body)
    assert body["stored"]["v"] == body["state"]["version"] and "history" in body
    # The token protects the new routes.
    client = Client(port)
    client.connection.request("DELETE", f"/customers/{by_api}")
    assert client.connection.getresponse().status == 401
    client.close()

    done = cli(pipeline, "erase", by_cli, "--wait", "60")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0])["customer_id"] == by_cli
    assert pipeline.store.get(by_cli) is None

    status, body = api_call(port, "DELETE", f"/customers/{quote(by_api, safe='')}")
    assert status == 202 and body["status"] == "accepted" and body["customer_id"] == by_api
    assert_valid("ErasureAccepted", body)
    pipeline.produce_raw("erasures", [(by_topic.encode(), erasure_request(by_topic))])
    done = cli(pipeline, "erase", suppressed, "--suppress", "--wait", "60")
    assert done.returncode == 0, done.stderr

    # A batch of erasures with the worker killed -9 while it applies them: right after the
    # first commit that applies some of them (before their changes are published and
    # trimmed, or before the other shards' requests are applied).
    topic = pipeline.topics["erasures"]

    def applied_requests() -> int:
        return sum(pipeline.store.offsets(p).get(topic, 0) for p in range(pipeline.partitions))

    before = applied_requests()
    pipeline.produce_raw("erasures", [(cid.encode(), erasure_request(cid)) for cid in across_kill])
    deadline = time.monotonic() + 60
    while applied_requests() == before:
        assert time.monotonic() < deadline, "the erasures were not applied"
        time.sleep(0.005)
    pipeline.kill(pipeline.workers[0])
    pipeline.start_worker()
    pipeline.wait_applied(1.0)
    pipeline.wait_quiet()

    assert holders_of(pipeline, erased) == {}, "erased ids still held"
    wait_api(port)  # the restarted worker's
    status, body = api_call(port, "GET", f"/customers/{quote(by_api, safe='')}/export")
    assert status == 404
    assert_valid("Error", body)
    salt = erasure_salt(pipeline.store)
    audit = [
        json.loads(record)
        for shard in range(pipeline.partitions)
        for record in pipeline.store.audit(shard)
    ]
    assert sorted(r["customer_hash"] for r in audit) == sorted(
        customer_digest(salt, cid) for cid in erased
    )

    # One erasure change per erased customer: one event id (a re-send after the kill
    # carries the same id and bytes), new tier null, chained to the customer's last change.
    changes = pipeline.changes()
    for cid in erased:
        mine = [c for c in changes if c["customer_id"] == cid]
        final = [c for c in mine if c["cause"] == "erasure"]
        assert len({c["event_id"] for c in final}) == 1, (cid, final)
        assert all(c == final[0] for c in final)
        assert final[0]["new_tier"] is None and final[0]["new_segment"] is None
        last = max((c for c in mine if c["cause"] != "erasure"), key=lambda c: c["version"])
        assert final[0]["version"] == last["version"] + 1
        assert final[0]["previous_tier"] == last["new_tier"]
    assert pipeline.store.tallies()["change:erasure"] == len(erased)

    # Later events: a fresh state for an erased id, a dead letter for a suppressed one.
    later = [e for e in pipeline.events if e.customer_id in (by_cli, suppressed)][:2]
    later = [e.model_copy(update={"event_id": e.event_id + "-later"}) for e in later]
    pipeline.produce(later)
    pipeline.wait_applied(1.0)
    pipeline.wait_quiet()
    assert pipeline.store.get(by_cli) is not None
    assert pipeline.store.get(suppressed) is None
    letters = [json.loads(v) for _, v in pipeline.read("dead-letters")]
    assert [d["error_kind"] for d in letters] == ["erased"]
    assert letters[0]["payload_base64"] == "" and letters[0]["key_base64"] is None
    others = [cid for cid in ids if cid not in erased]
    assert all(pipeline.store.get(cid) is not None for cid in others[:50])
