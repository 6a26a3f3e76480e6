"""Custom criteria end to end: trait updates on the customer-profiles topic move customers
through the worker's fenced atomic commit (real Kafka and Redis), tombstones delete the
traits, hostile profiles become dead letters, and an erasure leaves no trait behind."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from kafka.admin import ConfigResource, ConfigResourceType

from scoring.events import PurchaseEvent
from tests.integration.api_support import Client, free_port
from tests.integration.helpers import admin_client
from tests.integration.pipeline import ROOT, Pipeline
from tierstream.settings import Settings
from tierstream.topics import create_topics

B2B = ROOT / "configs" / "b2b-traits.yaml"
NOW = datetime.now(UTC).replace(microsecond=0)
RICH = {"referrals": 5, "pays_on_time": True, "fees": 25000, "strategic_fit": 9}


def _purchase(n: int, customer: str) -> PurchaseEvent:
    return PurchaseEvent(
        event_id=f"p{n}",
        customer_id=customer,
        occurred_at=NOW - timedelta(days=2),
        amount=Decimal(6000),
        currency="USD",
    )


def _update(customer: str, traits: Any, at: datetime) -> bytes:
    body = {"customer_id": customer, "traits": traits, "updated_at": at.isoformat()}
    return json.dumps(body).encode()


def _wait(pipeline: Pipeline, check: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not seen\n{pipeline.logs()}"
        time.sleep(0.5)


def test_trait_updates_through_kafka_move_customers_with_the_explanation(make_pipeline) -> None:
    port = free_port()
    pipeline: Pipeline = make_pipeline(
        config=B2B, partitions=2, env={"TIERSTREAM_API_PORT": str(port)}
    )
    pipeline.start_worker()
    pipeline.produce([_purchase(1, "k1"), _purchase(2, "k2")])
    pipeline.wait_applied(1.0)
    at = NOW - timedelta(hours=1)
    pipeline.produce_raw(
        "profiles",
        [
            (b"k1", _update("k1", RICH, at)),
            (b"k1", _update("k1", RICH, at)),  # redelivered by the producer: counts once
            (b"k1", _update("k1", {"referrals": 0}, at - timedelta(days=1))),  # older: ignored
            (b"k2", _update("k2", RICH, at)),
            (b"k2", None),  # tombstone: k2's traits are deleted
            (b"k1", _update("k1", {"nested": {"no": 1}}, at)),  # hostile: a dead letter
            (b"k9", _update("k1", RICH, at)),  # key is not the customer id: a dead letter
        ],
    )
    pipeline.wait_applied(1.0)
    pipeline.wait_quiet()

    by_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for change in pipeline.changes():
        by_customer[change["customer_id"]].append(change)
    k1 = [(c["cause"], c["previous_tier"], c["new_tier"]) for c in by_customer["k1"]]
    assert k1 == [("purchase", None, "Bronze"), ("profile", "Bronze", "Gold")]
    reason = by_customer["k1"][1]["reason"]
    assert reason.startswith("profile update of ")
    assert "referrals (none)→5" in reason and "pays_on_time (none)→true" in reason
    assert "tier Gold: weighted score 3.771 = (4×R5 + 5×F1 + 6×M3 + 3×E1 + 7×referrals 4" in reason
    assert "traits: referrals 5→4, pays_on_time true→5, fees 25000→4, strategic_fit 9→5" in reason
    k2 = [(c["cause"], c["new_tier"]) for c in by_customer["k2"]]
    assert k2 == [("purchase", "Bronze"), ("profile", "Gold"), ("profile", "Bronze")]
    assert by_customer["k2"][2]["reason"].startswith("profile deleted")
    for changes in by_customer.values():  # the change chains hold
        assert [c["version"] for c in changes] == list(range(1, len(changes) + 1))

    k1_state, k2_state = pipeline.store.get("k1"), pipeline.store.get("k2")
    assert k1_state is not None and k2_state is not None
    assert k1_state.traits == {k: v if isinstance(v, bool) else Decimal(v) for k, v in RICH.items()}
    assert k1_state.tier == "Gold" and k2_state.traits is None and k2_state.tier == "Bronze"
    tallies = pipeline.store.tallies()
    assert (
        tallies.get("change:profile") == 3
        and tallies.get("profile:applied") == 3
        and tallies.get("profile:stale") == 1
    )
    letters = [json.loads(value) for _, value in pipeline.read("dead-letters")]
    kinds = sorted(letter["error_kind"] for letter in letters)
    assert kinds == ["invalid_profile", "key_mismatch"], letters
    assert all(letter["source_topic"] == pipeline.topics["profiles"] for letter in letters)
    assert base64.b64decode(letters[0]["payload_base64"])  # the message is kept to inspect

    shown = _cli(pipeline, "customer", "k1", "--json")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["traits"] == {
        "fees": "25000",
        "pays_on_time": True,
        "referrals": "5",
        "strategic_fit": "9",
    }
    assert "traits: referrals 5→4" in record["why"] and record["tier"] == "Gold"
    status, served = _api(pipeline, port, "/customers/k1")  # the worker's own API
    assert status == 200 and served["traits"] == record["traits"], served
    assert "traits: referrals 5→4" in served["why"]
    status, exported = _api(pipeline, port, "/customers/k1/export")
    assert status == 200 and exported["state"]["traits"] == record["traits"]
    status, flows = _api(pipeline, port, "/flows")
    assert status == 200 and flows["events"]["profile:applied"] == 3
    assert flows["totals"]["events"] == 2 and flows["changes_by_cause"]["profile"] == 3

    # An erasure through the erasures topic leaves no trait behind.
    request = {"event_id": "erase-k1", "customer_id": "k1", "requested_at": NOW.isoformat()}
    pipeline.produce_raw("erasures", [(b"k1", json.dumps(request).encode())])
    _wait(pipeline, lambda: pipeline.store.get("k1") is None, "the erasure of k1")
    assert _cli(pipeline, "customer", "k1").returncode == 1


def test_topics_create_makes_the_profiles_topic_compacted(
    kafka_bootstrap: str, unique_name: Any
) -> None:
    names = {
        f"topic_{kind}": unique_name(kind)
        for kind in ("purchases", "engagements", "tier_changes", "dead_letters", "erasures")
    }
    profiles = unique_name("profiles")
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, partitions=3, topic_profiles=profiles, **names
    )
    try:
        created = create_topics(settings)
        assert created[profiles] == 3  # partitioned like the input topics
        admin = admin_client(kafka_bootstrap)
        try:
            described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, profiles)])
        finally:
            admin.close()
        # kafka-python 3: {"topic": {name: {key: {"value": ...}}}}, non-default keys only
        policy = described["topic"][profiles]["cleanup.policy"]
        assert policy["value"] == "compact", described
    finally:
        admin = admin_client(kafka_bootstrap)
        try:
            existing = set(admin.list_topics())
            doomed = [n for n in [*names.values(), profiles] if n in existing]
            admin.delete_topics(doomed, timeout_ms=30_000)
        finally:
            admin.close()


def _api(pipeline: Pipeline, port: int, path: str) -> tuple[int, Any]:
    deadline = time.monotonic() + 60
    while True:
        client = Client(port)
        try:
            status, body, _ = client.get(path)
            return status, body
        except OSError:
            assert time.monotonic() < deadline, f"the worker's API did not start\n{pipeline.logs()}"
            time.sleep(0.3)
        finally:
            client.close()


def _cli(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tierstream.cli", *args],
        cwd=Path(ROOT),
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
