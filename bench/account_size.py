"""What one large B2B account costs the account step, in one process, on a real Redis.

    python -m bench.account_size [--contacts 1000 10000] [--days 6] [--updates 200]
                                 [--redis-url URL]

For an account of N contacts, each with D purchase days in its 365-day window (generated
purchase events, applied by the customer ``Scorer`` and turned into contribution updates
by ``contact_updates``, as the customer step does), the account is first filled. Then
``--updates`` further events (a new purchase of a random contact, in time order) each send
one update, and each update is applied as its own account step: load the account from
Redis, ``AccountLogic.apply`` (decode the contributions, fold the update, re-score, encode
them), commit. That is the account step's work when a fetch holds one update of this
account, the usual case for a large account whose contacts buy at different times. The
same updates are then also applied in a single step (a fetch holding all of them): the
amortised cost. Reported: µs per update (median and p90, split into load, apply and
commit) and the account key's size (STRLEN and MEMORY USAGE).

Without ``--redis-url`` a private redis-server is started (bench.infra.PrivateRedis), so
that nothing else shares the measured Redis.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from scoring.accounts import AccountScorer, ContributionUpdate, contact_updates
from scoring.engine import Scorer
from scoring.events import PurchaseEvent
from scoring.state import CustomerState
from streams.accounts import AccountLogic
from streams.processor import Parsed, StepResult
from tierstream.clock import EventClock
from tierstream.settings import load_scoring_config
from tierstream.stores.redis import RedisStore

ACCOUNT = "ACME"
START = datetime(2025, 1, 1, tzinfo=UTC)


class Contacts:
    """Generated contacts of one account, as the customer step holds them."""

    def __init__(self, scorer: Scorer, count: int, days: int, seed: int = 7) -> None:
        self.scorer = scorer
        self.random = random.Random(seed)
        self.states = {f"c{n:06d}": CustomerState(f"c{n:06d}") for n in range(count)}
        self.events = 0
        self.filled: dict[str, ContributionUpdate] = {}
        # D distinct purchase days per contact within the first 300 days: all in the window
        # of the measurements, which come after them.
        for contact in self.states:
            for day in sorted(self.random.sample(range(300), days)):
                for update in self.purchase(contact, START + timedelta(days=day, hours=12)):
                    self.filled[update.contact_id] = update  # a snapshot: the last one holds all

    def purchase(self, contact: str, at: datetime) -> list[ContributionUpdate]:
        self.events += 1
        event = PurchaseEvent(
            event_id=f"e{self.events}",
            customer_id=contact,
            occurred_at=at,
            amount=Decimal(self.random.randrange(500, 20_000)) / 100,
            currency="USD",
            account_id=ACCOUNT,
        )
        state = self.states[contact]
        result = self.scorer.apply(state, event, at)
        return contact_updates(state, event, result.outcome)


def _step(
    store: RedisStore, logic: AccountLogic, updates: list[ContributionUpdate]
) -> tuple[float, float, float]:
    """One account step over ``updates``: seconds spent loading, applying, committing."""
    items: list[Any] = list(updates)
    parsed = Parsed(items, {}, StepResult(), None)
    started = time.perf_counter()
    states = store.load(0, parsed.customer_ids)
    loaded = time.perf_counter()
    step = logic.apply(parsed, states)
    applied = time.perf_counter()
    store.commit(logic.lease, step.batch)
    logic.committed(step)
    committed = time.perf_counter()
    store.ack(logic.lease, len(step.batch.changes))  # the outbox stays empty
    return loaded - started, applied - loaded, committed - applied


def measure(url: str, contacts: int, days: int, updates: int) -> dict[str, Any]:
    config = load_scoring_config(None)
    store = RedisStore(url, partitions=1, namespace=f"bench-account-{time.monotonic_ns()}")
    try:
        logic = AccountLogic(
            AccountScorer(config).scorer, store.acquire(0), store.offsets(0), {}, EventClock()
        )
        people = Contacts(Scorer(config), contacts, days)
        fill = list(people.filled.values())
        for start in range(0, len(fill), 500):
            _step(store, logic, fill[start : start + 500])
        key = store.state_key(0, ACCOUNT)
        client = store._client
        size = {"strlen": client.strlen(key), "memory_usage": client.memory_usage(key)}
        # Later purchases of random contacts, one a minute from day 320 on.
        moment = START + timedelta(days=320)
        singles: list[ContributionUpdate] = []
        names = sorted(people.states)
        for n in range(updates):
            contact = people.random.choice(names)
            singles.extend(people.purchase(contact, moment + timedelta(minutes=n)))
        split = [_step(store, logic, [update]) for update in singles]
        totals = [sum(parts) for parts in split]
        later = START + timedelta(days=321)
        batch = []
        for n in range(updates):
            contact = people.random.choice(names)
            batch.extend(people.purchase(contact, later + timedelta(minutes=n)))
        batched = sum(_step(store, logic, batch))
        return {
            "contacts": contacts,
            "purchase_days_per_contact": days,
            "account_key_bytes": size,
            "bytes_per_contact": round(size["memory_usage"] / contacts, 1),
            "one_update_per_step_us": {
                "median": round(statistics.median(totals) * 1e6),
                "p90": round(sorted(totals)[int(len(totals) * 0.9)] * 1e6),
                "load_median": round(statistics.median(s[0] for s in split) * 1e6),
                "apply_median": round(statistics.median(s[1] for s in split) * 1e6),
                "commit_median": round(statistics.median(s[2] for s in split) * 1e6),
            },
            "all_in_one_step_us_per_update": round(batched / len(batch) * 1e6),
            "updates": len(singles),
        }
    finally:
        store.wipe()
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.account_size", description=__doc__)
    parser.add_argument("--contacts", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--days", type=int, default=6, help="purchase days per contact")
    parser.add_argument("--updates", type=int, default=200, help="updates timed per size")
    parser.add_argument("--redis-url", help="default: a private redis-server")
    args = parser.parse_args(argv)
    private = None
    if args.redis_url is None:
        from bench.infra import PrivateRedis  # noqa: PLC0415

        private = PrivateRedis(Path(tempfile.mkdtemp(prefix="account-size-")))
        url = private.url
    else:
        url = args.redis_url
    try:
        for contacts in args.contacts:
            print(json.dumps(measure(url, contacts, args.days, args.updates)), flush=True)
    finally:
        if private is not None:
            private.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
