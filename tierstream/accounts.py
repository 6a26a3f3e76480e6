"""Accounts in the embedded replay: the contacts' updates applied as they happen.

The replay applies each customer's event, then hands the updates it sends its accounts
(``scoring.accounts.contact_updates``) to ``AccountBook``, which applies them to the
account states and keeps one timer per account, so that an account's time-driven changes
(recency crossing a cut, purchases leaving the window) fire at their own moment, exactly as
the customers' do.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from scoring.accounts import AccountScorer, AccountState, contact_updates
from scoring.config import ScoringConfig
from scoring.engine import AsOfError, Change, Outcome
from scoring.events import InputEvent
from scoring.state import CustomerState
from tierstream.stores.from_settings import ACCOUNTS_NAMESPACE_SUFFIX as ACCOUNTS_NAMESPACE_SUFFIX
from tierstream.stores.from_settings import account_store as account_store
from tierstream.stores.from_settings import accounts_namespace as accounts_namespace

if TYPE_CHECKING:
    from tierstream.settings import Settings


class AccountBook:
    """Every account's state during a replay, with a day-bucketed timer per account."""

    def __init__(self, config: ScoringConfig, emit: Callable[[Change], None]) -> None:
        self.scorer = AccountScorer(config)
        self.accounts: dict[str, AccountState] = {}
        self.emit = emit
        self.changes = 0
        self._due_days: list[int] = []
        self._timers: dict[int, set[str]] = {}
        self._scheduled: dict[str, int] = {}

    def contact_event(
        self, state: CustomerState, event: InputEvent, outcome: Outcome, now: datetime
    ) -> None:
        """After ``event`` was applied to ``state``: update the accounts it concerns."""
        for update in contact_updates(state, event, outcome):
            account = self.accounts.get(update.account_id)
            if account is None:
                account = self.accounts[update.account_id] = AccountState.new(update.account_id)
            self._emit(self.scorer.apply(account, update, now))
            self._schedule(account)

    def fire_timers(self, through_day: int) -> None:
        """Every account's time-driven changes due on or before ``through_day``."""
        while self._due_days and self._due_days[0] <= through_day:
            day = heapq.heappop(self._due_days)
            for account_id in sorted(self._timers.pop(day)):
                if self._scheduled.get(account_id) != day:
                    continue  # superseded by a later reschedule
                del self._scheduled[account_id]
                account = self.accounts[account_id]
                self._emit(self.scorer.advance_to_day(account, day))
                self._schedule(account)

    def finish(self, as_of: datetime) -> None:
        """Bring every account to the as-of moment."""
        for account in self.accounts.values():
            self._emit(self.scorer.advance(account, as_of))

    def records(self, as_of: datetime | None = None) -> list[dict[str, Any]]:
        return [self.scorer.record(a, as_of) for _, a in sorted(self.accounts.items())]

    def _emit(self, changes: list[Change]) -> None:
        for change in changes:
            self.emit(change)
        self.changes += len(changes)

    def _schedule(self, account: AccountState) -> None:
        day = self.scorer.next_rescore_day(account)
        account_id = account.account_id
        if day is None:
            self._scheduled.pop(account_id, None)
            return
        if self._scheduled.get(account_id) != day:
            self._scheduled[account_id] = day
            bucket = self._timers.get(day)
            if bucket is None:
                self._timers[day] = {account_id}
                heapq.heappush(self._due_days, day)
            else:
                bucket.add(account_id)


def export_accounts(settings: Settings, handle: TextIO, as_of: datetime) -> tuple[int, list[str]]:
    """Write every account's record as of ``as_of`` to ``handle`` (JSONL): how many, and
    the problems of those that could not be brought to ``as_of``."""
    scorer = AccountScorer(settings.scoring_config())
    store = account_store(settings)
    count = 0
    problems: list[str] = []
    try:
        for state in store.scan():
            try:
                record = scorer.record(AccountState.of(state), as_of)
            except AsOfError as exc:
                problems.append(str(exc).replace("customer", "account", 1))
                continue
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")
            count += 1
    finally:
        store.close()
    return count, problems
