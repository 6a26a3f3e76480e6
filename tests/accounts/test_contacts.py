"""Accounts, unit by unit: moves, late events, repeats, and invalid account ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from scoring.accounts import AccountScorer, AccountState, ContributionUpdate, contact_updates
from scoring.engine import Scorer
from scoring.events import PurchaseEvent
from scoring.state import CustomerState
from streams.deadletters import RawMessage, Rejected, parse_message

T0 = datetime(2024, 1, 1, 12, tzinfo=UTC)


def purchase(event_id: str, customer: str, days: int, amount: str, account: str | None):
    return PurchaseEvent(
        event_id=event_id,
        customer_id=customer,
        occurred_at=T0 + timedelta(days=days),
        amount=Decimal(amount),
        currency="USD",
        account_id=account,
    )


class World:
    """Customers and accounts, the updates applied as they are sent."""

    def __init__(self, config) -> None:
        self.scorer = Scorer(config)
        self.accounts_scorer = AccountScorer(config)
        self.customers: dict[str, CustomerState] = {}
        self.accounts: dict[str, AccountState] = {}
        self.sent: list[ContributionUpdate] = []

    def apply(self, event: PurchaseEvent, now: datetime | None = None) -> None:
        now = now or event.occurred_at
        state = self.customers.setdefault(event.customer_id, CustomerState(event.customer_id))
        outcome = self.scorer.apply(state, event, now).outcome
        for update in contact_updates(state, event, outcome):
            self.sent.append(update)
            self.deliver(update, now)

    def deliver(self, update: ContributionUpdate, now: datetime):
        account = self.accounts.setdefault(update.account_id, AccountState.new(update.account_id))
        return self.accounts_scorer.apply(account, update, now)

    def record(self, account_id: str, now: datetime) -> dict:
        return self.accounts_scorer.record(self.accounts[account_id], now)


def test_a_moving_contact_takes_its_totals_along(default_config):
    world = World(default_config)
    world.apply(purchase("e1", "c1", 0, "50", "acme"))
    world.apply(purchase("e2", "c2", 1, "70", "acme"))
    world.apply(purchase("e3", "c2", 30, "30", "globex"))  # c2 moves: all its purchases go
    end = T0 + timedelta(days=40)
    acme, globex = world.record("acme", end), world.record("globex", end)
    assert (acme["contacts"], acme["frequency"], acme["monetary"]) == (1, 1, "50")
    assert (globex["contacts"], globex["frequency"], globex["monetary"]) == (1, 2, "100")
    assert acme["last_purchase_at"] == (T0).isoformat()  # c2's purchases left with it
    assert globex["first_purchase_at"] == (T0 + timedelta(days=1)).isoformat()


def test_the_account_is_the_one_on_the_latest_event_whatever_the_arrival_order(default_config):
    world = World(default_config)
    now = T0 + timedelta(days=10)
    world.apply(purchase("e2", "c1", 5, "30", "globex"), now)
    world.apply(purchase("e1", "c1", 0, "50", "acme"), now)  # late: does not move c1 back
    assert "acme" not in world.accounts
    assert world.record("globex", now)["frequency"] == 2
    # A later event without an account takes the customer out of every account.
    world.apply(purchase("e3", "c1", 11, "5", None))
    assert world.record("globex", T0 + timedelta(days=11))["contacts"] == 0
    assert world.accounts["globex"].totals.tier is None


def test_repeated_and_older_updates_change_nothing(default_config):
    world = World(default_config)
    world.apply(purchase("e1", "c1", 0, "50", "acme"))
    world.apply(purchase("e2", "c1", 1, "20", "globex"))
    world.apply(purchase("e3", "c1", 2, "20", "globex"))
    now = T0 + timedelta(days=3)
    for account in world.accounts.values():
        world.accounts_scorer.advance(account, now)
    before = {a: s.to_dict() for a, s in world.accounts.items()}
    for update in world.sent:  # everything delivered again, in order: at least once
        assert world.deliver(update, now) == []
    assert {a: s.to_dict() for a, s in world.accounts.items()} == before
    assert world.record("acme", now)["contacts"] == 0
    assert world.record("globex", now)["frequency"] == 3


def test_account_state_round_trips(default_config):
    world = World(default_config)
    world.apply(purchase("e1", "c1", 0, "50.25", "acme"))
    world.apply(purchase("e2", "c2", 1, "20", "acme"))
    world.apply(purchase("e3", "c2", 2, "20", "globex"))
    for account in world.accounts.values():
        assert AccountState.from_dict(account.to_dict()).to_dict() == account.to_dict()
    for update in world.sent:
        assert ContributionUpdate.from_json(update.to_json()) == update
    customer = world.customers["c2"]
    assert CustomerState.from_dict(customer.to_dict()) == customer


def test_customers_without_accounts_persist_as_before():
    state = CustomerState("c1")
    assert "ac" not in state.to_dict()


@pytest.mark.parametrize("bad", ["", "a\x00b", "tab\there", "x" * 257, 12, ["a"]])
def test_invalid_account_ids_are_rejected_and_dead_lettered(default_config, bad):
    fields = {
        "event_id": "e1",
        "customer_id": "c1",
        "occurred_at": "2024-01-01T00:00:00Z",
        "amount": "5",
        "currency": "USD",
        "account_id": bad,
    }
    with pytest.raises(ValidationError):
        PurchaseEvent.model_validate(fields)
    import json

    message = RawMessage("purchases", 0, 7, b"c1", json.dumps(fields).encode())
    with pytest.raises(Rejected) as rejected:
        parse_message(message, PurchaseEvent, default_config, datetime.now(UTC))
    assert rejected.value.kind == "invalid_event"
    assert "account_id" in str(rejected.value.detail)


def test_the_customer_step_queues_updates_in_its_commit_and_an_erasure_leaves(default_config):
    """Through the worker's own shard step: the contribution updates are outbox entries of
    the same commit as the customer's state, keyed by account; an erased contact leaves."""
    import json

    from streams.processor import ShardProcessor
    from tierstream.clock import WallClock
    from tierstream.erasure import ErasureRequest
    from tierstream.stores.memory import MemoryStore
    from tierstream.stores.outbox_codec import CONTRIBUTION_ENTRY, decode_entry

    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    store = MemoryStore(partitions=1)
    kinds = {"purchases": PurchaseEvent, "erasures": ErasureRequest}
    step = ShardProcessor(
        store, Scorer(default_config), store.acquire(0), kinds, WallClock(now), salt=b"s"
    )
    body = {
        "event_id": "e1",
        "customer_id": "c1",
        "occurred_at": (now - timedelta(hours=1)).isoformat(),
        "amount": "25",
        "currency": "USD",
        "account_id": "acme",
    }
    erase = {"event_id": "r1", "customer_id": "c1", "requested_at": now.isoformat()}
    step.process([RawMessage("purchases", 0, 0, b"c1", json.dumps(body).encode())])
    state = store.get("c1")
    assert state is not None and state.account is not None and state.account.seq == 1
    step.process([RawMessage("erasures", 0, 0, b"c1", json.dumps(erase).encode())])
    updates = [
        (key, ContributionUpdate.from_json(json.loads(value)))
        for kind, key, value in map(decode_entry, store.outbox(0, 100))
        if kind == CONTRIBUTION_ENTRY
    ]
    assert [(key, u.seq, u.contribution is None) for key, u in updates] == [
        (b"acme", 1, False),
        (b"acme", 2, True),
    ]
    account = AccountState.new("acme")
    scorer = AccountScorer(default_config)
    for _, update in updates:
        scorer.apply(account, update, now)
    assert account.contacts == {} and account.totals.tier is None
