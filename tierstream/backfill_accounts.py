"""Accounts in a backfill: the contacts' contribution updates applied straight to the
account shards, through the account step's own logic and fenced atomic commit.

The worker sends each update through the customer outbox and the internal topic
``<app>-account-contributions`` (streams/accounts.py). A backfill needs no Kafka, and what
it loads is history: so it hands the updates of each customer commit to ``AccountLogic``
(the account step's computation) and commits the account shards itself, before the
customer commit that carries the contacts' new ``seq``. A kill -9 between the two leaves
the account shards ahead: the next run applies the customers' events again from the same
states, which makes the very same updates (same contact, same ``seq``), and the account
step ignores an update whose ``seq`` it holds already. Nothing is lost or counted twice,
and the account step's applied offsets of the internal topic are left alone, so the
worker goes on from there.

Account changes found on the way are, like the customers', kept in the accounts' recent
history and running totals and published only with ``queue_changes``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from scoring.accounts import AccountScorer, ContributionUpdate
from scoring.config import ScoringConfig
from streams.accounts import AccountLogic
from streams.processor import Parsed, StepResult
from tierstream.clock import EventClock
from tierstream.stores.base import shard_for
from tierstream.stores.outbox_codec import CONTRIBUTION_ENTRY, decode_entry
from tierstream.stores.redis import RedisStore


class AccountSink:
    """Every account shard of ``store``, leased for one backfill run."""

    def __init__(self, store: RedisStore, config: ScoringConfig) -> None:
        self.store = store
        engine = AccountScorer(config).scorer
        self.shards = {
            shard: AccountLogic(
                engine, store.acquire(shard), store.offsets(shard), {}, EventClock()
            )
            for shard in range(store.partitions)
        }
        self.updates = 0
        self.changes = 0

    def apply(self, entries: list[bytes], *, queue_changes: bool) -> None:
        """Apply the contribution entries among a customer step's outbox ``entries``
        (in their order), one atomic commit per account shard."""
        by_shard: dict[int, list[ContributionUpdate]] = defaultdict(list)
        for entry in entries:
            kind, key, value = decode_entry(entry)
            if kind != CONTRIBUTION_ENTRY or key is None:
                continue
            update = ContributionUpdate.from_json(json.loads(value))
            by_shard[shard_for(update.account_id, self.store.partitions)].append(update)
        for shard, updates in by_shard.items():
            logic = self.shards[shard]
            items: list[Any] = list(updates)  # the account step's items: updates
            parsed = Parsed(items, {}, StepResult(), None)
            step = logic.apply(parsed, self.store.load(shard, parsed.customer_ids))
            if not queue_changes:
                step.batch.changes = []  # historical account moves are not news either
            self.store.commit(logic.lease, step.batch)
            logic.committed(step)
            self.updates += len(updates)
            self.changes += len(step.result.changes)
