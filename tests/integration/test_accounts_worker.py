"""B2B accounts through Kafka: the contribution updates go through the internal topic to
the account step, and after kill -9 every account equals the pandas aggregation."""

from __future__ import annotations

import time
from collections import defaultdict
from decimal import Decimal
from typing import Any

from scoring.accounts import AccountScorer, AccountState
from streams.accounts import ACCOUNTS_NAMESPACE_SUFFIX
from tests.accounts.reference import account_rfm, with_accounts
from tests.integration.pipeline import AS_OF, Pipeline, subset
from tierstream.stores.redis import RedisStore


def account_store(pipeline: Pipeline) -> RedisStore:
    return RedisStore(
        pipeline.redis_url,
        partitions=pipeline.partitions,
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


def test_accounts_through_kafka_with_kill9_equal_the_pandas_aggregation(
    make_pipeline, cdnow_events, cdnow_frame
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

        scorer = AccountScorer(pipeline.scorer.config)
        accounts = {s.customer_id: AccountState.of(s) for s in store.scan()}
        records = {a: scorer.record(account, AS_OF) for a, account in accounts.items()}
        frame = cdnow_frame[cdnow_frame["customer_id"] < "03000"]
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
        print(f"\n{len(events)} events, {len(held)} accounts, {len(by_id)} account changes")
    finally:
        store.wipe()
        store.close()
