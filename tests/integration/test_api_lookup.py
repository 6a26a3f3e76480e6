"""The support-ready lookups over real Redis holding every CDNOW customer's state."""

from __future__ import annotations

import http.client
import json
import uuid
from typing import Any
from urllib.parse import quote

import pytest

from tests.api_schema import assert_valid
from tests.integration.api_support import Client, Served, cdnow, commit_states
from tierstream.api import create_api
from tierstream.settings import Settings
from tierstream.stores.redis import RedisStore

PARTITIONS = 4


@pytest.fixture(scope="module")
def replayed():
    return cdnow()


@pytest.fixture(scope="module")
def served(redis_url, replayed, kafka_bootstrap):
    store = RedisStore(redis_url, partitions=PARTITIONS, namespace=f"lk{uuid.uuid4().hex[:8]}")
    store.wipe()
    commit_states(store, replayed.states.values())
    settings = Settings(kafka_bootstrap=kafka_bootstrap, partitions=PARTITIONS, clock="event")
    with Served(create_api(store, replayed.scorer, settings)) as server:
        yield server
    store.wipe()
    store.close()


@pytest.fixture
def client(served):
    c = Client(served.port)
    yield c
    c.close()


def post(port: int, path: str, body: bytes) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def expected(replayed, customer_id: str) -> dict[str, Any]:
    scorer, state = replayed.scorer, replayed.states[customer_id]
    record = scorer.record(state)
    level = scorer.config.service_levels.get(record["tier"])
    return {
        "customer_id": customer_id,
        "tier": record["tier"],
        "is_vip": record["tier"] == "VIP",
        "service_level": level.model_dump() if level else None,
        "segment": record["segment"],
        "behaviour": None,
        "why": scorer.explain(state),
    }


def some_of_every_tier(replayed, each: int = 5) -> list[str]:
    by_tier: dict[str | None, list[str]] = {}
    for customer_id in sorted(replayed.states):
        by_tier.setdefault(replayed.states[customer_id].tier, []).append(customer_id)
    return [customer_id for ids in by_tier.values() for customer_id in ids[:each]]


def test_tier_lookup_answers_tier_vip_and_service_level(client, replayed):
    ids = some_of_every_tier(replayed)
    tiers = set()
    for customer_id in ids:
        status, body, _ = client.get(f"/customers/{quote(customer_id, safe='')}/tier")
        assert status == 200, body
        assert body == expected(replayed, customer_id)
        tiers.add(body["tier"])
    assert {"VIP", "A", "B", "C"} <= tiers
    vip = next(b for b in (client.get(f"/customers/{i}/tier")[1] for i in ids) if b["is_vip"])
    assert vip["service_level"]["response_time"] == "same day"
    status, body, _ = client.get("/customers/no-such-customer/tier")
    assert status == 404 and body["customer_id"] == "no-such-customer"
    # the full record is still served at /customers/{id}
    status, body, _ = client.get(f"/customers/{ids[0]}")
    assert status == 200 and "history" in body


def test_batch_lookup_answers_every_id_in_order_unknown_ones_inline(served, replayed):
    ids = sorted(replayed.states)[::230][:100]
    asked = [ids[0], "nobody", *ids[1:], ids[0]]
    status, body = post(served.port, "/customers/lookup", json.dumps({"ids": asked}).encode())
    assert status == 200, body
    results = body["results"]
    assert [r["customer_id"] for r in results] == asked
    assert results[1] == {"customer_id": "nobody", "found": False, "error": "unknown customer"}
    for result in results[:1] + results[2:]:
        assert result.pop("found") is True
        assert result == expected(replayed, result["customer_id"])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", '{"ids": [...]}'),
        (b'{"ids": "00001"}', "non-empty list"),
        (b'{"ids": []}', "non-empty list"),
        (b'{"ids": ["a", 7]}', "ids[1] is not a string"),
        (b'{"ids": ["a", ""]}', "ids[1]: customer id is empty"),
        (json.dumps({"ids": ["x"] * 1001}).encode(), "at most 1000 ids"),
    ],
)
def test_a_malformed_lookup_body_is_a_400_with_the_reason(served, body, reason):
    status, answer = post(served.port, "/customers/lookup", body)
    assert status == 400
    assert reason in answer["error"]


def test_lookup_answers_validate_against_the_openapi_schemas(client, served, replayed):
    check = assert_valid
    customer_id = sorted(replayed.states)[0]
    check("CustomerTier", client.get(f"/customers/{customer_id}/tier")[1])
    check("Error", client.get("/customers/nobody/tier")[1])
    _, body = post(
        served.port, "/customers/lookup", json.dumps({"ids": [customer_id, "x"]}).encode()
    )
    check("LookupResults", body)
    for result in body["results"]:
        check("LookupResult", result)
    check("Error", post(served.port, "/customers/lookup", b"{")[1])
