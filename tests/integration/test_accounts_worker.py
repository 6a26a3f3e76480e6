"""B2B accounts through Kafka: the contribution updates go through the internal topic to
the account step, and after kill -9 every account equals the pandas aggregation."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from scoring.accounts import AccountScorer, AccountState, account_change_event_id
from scoring.engine import Scorer
from tests.accounts.reference import account_rfm, with_accounts
from tests.api_schema import assert_valid
from tests.integration.api_support import Client, Served
from tests.integration.pipeline import AS_OF, ROOT, Pipeline, subset
from tierstream.accounts import ACCOUNTS_NAMESPACE_SUFFIX
from tierstream.api import create_api
from tierstream.settings import Settings
from tierstream.stores.redis import RedisStore


def account_store(pipeline: Pipeline, partitions: int | None = None) -> RedisStore:
    return RedisStore(
        pipeline.redis_url,
        partitions=partitions or pipeline.partitions,
        namespace=pipeline.namespace + ACCOUNTS_NAMESPACE_SUFFIX,
    )


def wait_accounts_settled(pipeline: Pipeline, store: RedisStore, timeout: float = 180) -> None:
    """Every published contribution applied, the account outboxes drained, no new change."""
    topic = pipeline.topics["account-contributions"]
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        pipeline.wait_outbox_empty()
        ends = pipeline.end_offsets("account-contributions")
        applied = {p: store.offsets(p).get(topic, 0) for p in ends}
        outboxes_empty = all(not store.outbox(p, 1) for p in range(pipeline.partitions))
        now = (ends, sorted(store.tallies().items()))
        if applied == ends and outboxes_empty and now == last:
            return
        last = now
        time.sleep(2.0)
    raise AssertionError(f"accounts did not settle: {applied} of {ends}\n{pipeline.logs()}")


def assert_accounts_equal_reference(
    store: RedisStore, customer_scorer: Scorer, frame: Any
) -> tuple[dict[str, AccountState], dict[str, dict[str, Any]]]:
    """Every account in ``store`` equals the pandas aggregation of ``frame`` (contacts,
    frequency, monetary, recency as of AS_OF, 365-day window); returns the states and
    their records."""
    scorer = AccountScorer(customer_scorer.config)
    accounts = {s.customer_id: AccountState.of(s) for s in store.scan()}
    records = {a: scorer.record(account, AS_OF) for a, account in accounts.items()}
    expected = account_rfm(frame, AS_OF.date(), 365)
    held = {a for a, r in records.items() if r["contacts"] > 0}
    assert held == set(expected.index)
    wrong = []
    for account_id, row in expected.iterrows():
        got = records[account_id]
        if (
            got["contacts"] != row["contacts"]
            or got["frequency"] != row["frequency"]
            or Decimal(got["monetary"]) != Decimal(int(row["monetary_cents"])) / 100
            or got["recency_days"] != row["recency_days"]
        ):
            wrong.append((account_id, dict(row), got))
    assert wrong == [], f"{len(wrong)} accounts differ, e.g. {wrong[:2]}"
    return accounts, records


def assert_settled_accounts_exact(
    pipeline: Pipeline, store: RedisStore, frame: Any, customers_below: str
) -> None:
    """Once the account step has applied every update, the accounts of the customers below
    ``customers_below`` equal the pandas aggregation."""
    wait_accounts_settled(pipeline, store)
    subset = frame[frame["customer_id"] < customers_below]
    assert_accounts_equal_reference(store, pipeline.scorer, subset)


def check_export_and_api(
    pipeline: Pipeline,
    accounts: dict[str, AccountState],
    records: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    """`tierstream export --entity account` writes exactly these records, and
    GET /accounts/{id} shows one with its contacts and recent changes."""
    out = tmp_path / "accounts.jsonl"
    subprocess.run(
        [sys.executable, "-m", "tierstream.cli", "export", "--entity", "account"]
        + ["--state-out", str(out), "--as-of", "1998-07-01"],
        cwd=ROOT,
        env=pipeline.env,
        check=True,
        capture_output=True,
    )
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["account_id"]: r for r in exported} == records

    settings = Settings(
        redis_url=pipeline.redis_url,
        redis_namespace=pipeline.namespace,
        partitions=pipeline.partitions,
        app_id=pipeline.app_id,
        clock="event",
    )
    account_id = max(accounts, key=lambda a: len(accounts[a].contacts))
    held = accounts[account_id]
    with Served(create_api(pipeline.store, pipeline.scorer, settings)) as server:
        client = Client(server.port)
        try:
            status, body, _ = client.get("/accounts/" + quote(account_id, safe=""))
            assert status == 200, body
            assert body["account_id"] == account_id
            assert body["contacts"] == len(held.contacts) > 1
            assert [m["customer_id"] for m in body["members"]] == sorted(held.contacts)
            for member in body["members"]:
                customer = pipeline.store.get(member["customer_id"])
                assert customer is not None
                assert (member["tier"], member["segment"]) == (customer.tier, customer.segment)
            assert body["tier"] == held.totals.tier and body["version"] == held.totals.version
            latest = body["history"][0]
            assert latest["version"] == held.totals.version
            assert latest["event_id"] == account_change_event_id(account_id, latest["version"])
            assert_valid("Account", body)
            assert client.get("/accounts/nobody-at-all")[0] == 404
            assert client.get("/accounts/a%01b")[0] == 400
        finally:
            client.close()


def test_accounts_through_kafka_with_kill9_equal_the_pandas_aggregation(
    make_pipeline, cdnow_events, cdnow_frame, tmp_path
):
    events = with_accounts(subset(cdnow_events, "03000"))
    pipeline = make_pipeline()
    store = account_store(pipeline)
    try:
        pipeline.produce(events)
        worker = pipeline.start_worker()
        for fraction in (0.3, 0.65):
            pipeline.wait_applied(fraction)
            pipeline.kill(worker)  # SIGKILL: neither step may lose or repeat anything
            worker = pipeline.start_worker()
        pipeline.wait_applied(1.0)
        pipeline.wait_quiet()
        wait_accounts_settled(pipeline, store)

        frame = cdnow_frame[cdnow_frame["customer_id"] < "03000"]
        accounts, records = assert_accounts_equal_reference(store, pipeline.scorer, frame)
        held = {a for a, r in records.items() if r["contacts"] > 0}

        # Account changes on tier-changes: redelivered ones identical, versions 1..n
        # chaining to the stored account.
        by_id: dict[str, dict[str, Any]] = {}
        for change in pipeline.changes():
            if change.get("entity") == "account":
                assert by_id.setdefault(change["event_id"], change) == change
        chains: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for change in sorted(by_id.values(), key=lambda c: (c["account_id"], c["version"])):
            chains[change["account_id"]].append(change)
        assert set(chains) == {a for a, acc in accounts.items() if acc.totals.version}
        for account_id, chain in chains.items():
            assert [c["version"] for c in chain] == list(range(1, len(chain) + 1)), account_id
            for before, after in zip(chain, chain[1:], strict=False):
                assert after["previous_tier"] == before["new_tier"], (before, after)
            totals = accounts[account_id].totals
            assert (totals.version, totals.tier) == (chain[-1]["version"], chain[-1]["new_tier"])
        assert {"purchase", "inactivity"} <= {c["cause"] for c in by_id.values()}
        check_export_and_api(pipeline, accounts, records, tmp_path)
        print(f"\n{len(events)} events, {len(held)} accounts, {len(by_id)} account changes")
    finally:
        store.wipe()
        store.close()
