"""Acceptance: accounts in the replay equal an independent pandas aggregation, account by
account, on CDNOW with a third of the customers moving between accounts mid-history."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime

import pytest

from scoring.engine import Change, Scorer
from tests.accounts.reference import account_rfm, with_accounts
from tests.reference import load_cdnow
from tests.rfm_compare import rfm_mismatches
from tierstream.accounts import AccountBook
from tierstream.readers import bundled_cdnow_path, read_events
from tierstream.replay import ReplayStats, collect, replay

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference_frame():
    return load_cdnow()


@pytest.fixture(scope="module")
def cdnow_with_accounts():
    stats = ReplayStats()
    events = collect(read_events(bundled_cdnow_path(), "cdnow"), stats, strict=False)
    return with_accounts(events)


def run_accounts(events, config, as_of: date):
    changes: list[Change] = []
    moment = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    book = AccountBook(config, changes.append)
    result = replay(
        events,
        Scorer(config),
        as_of=moment,
        emit=changes.append,
        stats=ReplayStats(),
        accounts=book,
    )
    return result, book, changes


# The whole of CDNOW once; a second window on the customers below 12000 (half of them).
CASES = [(date(1998, 7, 1), 365, "99999"), (date(1997, 10, 15), 90, "12000")]


@pytest.mark.parametrize(("as_of", "window", "below"), CASES)
def test_accounts_match_pandas_aggregation(
    cdnow_with_accounts, reference_frame, no_hysteresis_config, as_of, window, below
):
    config = no_hysteresis_config.model_copy(update={"window_days": window})
    events = [e for e in cdnow_with_accounts if e.customer_id < below]
    _, book, _ = run_accounts(events, config, as_of)
    frame = reference_frame[reference_frame["customer_id"] < below]
    expected = account_rfm(frame, as_of, window)
    records = {r["account_id"]: r for r in book.records()}
    # Every account any customer ever named is held; those all of whose contacts moved
    # away hold no contact and nothing else.
    emptied = {a for a, r in records.items() if r["contacts"] == 0}
    assert set(records) - emptied == set(expected.index)
    assert all(records[a]["frequency"] == 0 and records[a]["tier"] is None for a in emptied)
    thresholds = book.scorer.scorer.thresholds
    mismatches = rfm_mismatches(expected, records, thresholds, counted=("contacts",))
    assert mismatches == [], f"{len(mismatches)} accounts differ, e.g. {mismatches[:3]}"


def test_account_chains_are_consistent_and_customers_unchanged(cdnow_with_accounts, default_config):
    """Account changes chain like customers' (versions 1, 2, ... ending at the stored tier,
    time-driven ones included), and the customers' own changes are exactly those of a
    replay without accounts."""
    as_of = date(1998, 7, 1)
    events = cdnow_with_accounts[:30_000]
    result, book, changes = run_accounts(events, default_config, as_of)
    plain = [e.model_copy(update={"account_id": None}) for e in events]
    moment = datetime(1998, 7, 1, tzinfo=UTC)
    alone: list[Change] = []
    replay(plain, Scorer(default_config), as_of=moment, emit=alone.append, stats=ReplayStats())
    customers = [c.to_json() for c in changes if "entity" not in c.to_json()]
    assert customers == [c.to_json() for c in alone]
    chains: dict[str, list[dict]] = defaultdict(list)
    for change in changes:
        data = change.to_json()
        if data.get("entity") == "account":
            chains[data["account_id"]].append(data)
    assert set(chains) == set(book.accounts)
    causes = set()
    for account_id, chain in chains.items():
        assert [c["version"] for c in chain] == list(range(1, len(chain) + 1))
        for before, after in zip(chain, chain[1:], strict=False):
            assert after["previous_tier"] == before["new_tier"]
            assert after["occurred_at"] >= before["occurred_at"]
        totals = book.accounts[account_id].totals
        assert (chain[-1]["new_tier"], chain[-1]["version"]) == (totals.tier, totals.version)
        causes.update(c["cause"] for c in chain)
    assert {"purchase", "inactivity"} <= causes
    ids = [c.event_id for c in changes]
    assert len(set(ids)) == len(ids), "account change ids never collide with customers'"
