"""The account step: B2B accounts through Kafka, exact and crash-safe like customers.

The contacts of one account arrive on different input partitions, so an account's state
cannot live in a customer shard. As Kafka Streams does for a re-keyed aggregation, the
aggregation goes through an internal topic: the customer step queues each contribution
update (scoring/accounts.py) in its outbox, in the same atomic commit as the customer's
state; the outbox publishes it to ``<app>-account-contributions``, keyed by account id; and
this module's step consumes that topic and applies the updates to account states kept in a
namespace of their own (``<namespace>.accounts``), with the very machinery customers use:
fenced shard leases, one atomic commit of states, applied offsets, the outbox of account
changes and the next rescore moments. An update delivered twice (the customer outbox is
at least once) is recognised by its per-contact sequence number and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from scoring.accounts import AccountEngine, AccountScorer, AccountState, ContributionUpdate
from scoring.config import ScoringConfig
from scoring.state import CustomerState
from streams.deadletters import RawMessage, Rejected, dead_letter, message_value
from streams.processor import Parsed, ShardLogic, Step, StepResult, _placements
from streams.publisher import SendMany
from streams.runtime import Runtime
from tierstream.settings import Settings
from tierstream.stores.from_settings import account_store


class AccountLogic(ShardLogic):
    """One account shard's steps: contribution updates in, one atomic commit out."""

    @property
    def accounts(self) -> AccountScorer:
        engine = self.scorer
        assert isinstance(engine, AccountEngine)
        return AccountScorer(engine.config, engine)

    def parse(self, messages: Sequence[RawMessage]) -> Parsed:
        result = StepResult()
        offsets: dict[str, int] = {}
        received = None if self.event_time else self.clock.now()
        updates: list[Any] = []
        for message in messages:
            if message.offset < self.offsets.get(message.topic, 0):
                result.counts["already_applied"] += 1
                continue
            offsets[message.topic] = max(offsets.get(message.topic, 0), message.offset + 1)
            try:
                updates.append(_update_of(message))
            except Rejected as reason:
                letter = dead_letter(message, reason, received or datetime.now(UTC))
                result.dead_letters.append(letter)
                result.counts[f"dead_letter:{reason.kind}"] += 1
        return Parsed(updates, offsets, result, received, list(messages))

    def apply(
        self,
        parsed: Parsed,
        states: dict[str, CustomerState],
        markers: dict[str, str] | None = None,
    ) -> Step:
        """Apply parsed contribution updates to the loaded account ``states`` (changed in
        place): each account is re-scored from its contacts' latest snapshots. Accounts
        are never erased by marker, so ``markers`` is unused."""
        result = parsed.result
        before = _placements(states)
        accounts: dict[str, AccountState] = {}
        scorer = self.accounts
        for update in parsed.events:
            assert isinstance(update, ContributionUpdate)
            account = accounts.get(update.account_id)
            if account is None:
                stored = states.get(update.account_id)
                if stored is None:
                    stored = states[update.account_id] = CustomerState(update.account_id)
                account = accounts[update.account_id] = AccountState.of(stored)
            now = self.moment(parsed, update.occurred_at)
            result.changes.extend(scorer.apply(account, update, now))
            result.counts["contributions"] += 1
        touched = [account.persist() for account in accounts.values()]
        return self._step(
            result, touched, parsed.offsets, emitted_at=parsed.emitted_at, before=before
        )


def _update_of(message: RawMessage) -> ContributionUpdate:
    raw = message_value(message)
    try:
        update = ContributionUpdate.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError) as exc:
        raise Rejected("invalid_contribution", str(exc)[:2000]) from None
    if message.key != update.account_id.encode("utf-8"):
        raise Rejected("key_mismatch", f"key {message.key!r} is not the account_id")
    return update


class AccountRuntime(Runtime):
    """The worker's owned account shards: ``Runtime`` with the account step, and none of
    the customer-population jobs (quintile cut points, behaviour segments)."""

    logic_class = AccountLogic

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.learning = None

    async def refresh_thresholds(self) -> None:
        return  # accounts are scored on fixed cut points

    async def refresh_behaviours(self) -> None:
        return

    async def learn_behaviours(self) -> None:
        return


def account_runtime(
    settings: Settings,
    config: ScoringConfig,
    send: SendMany,
    owns: Callable[[int], bool],
    commit_positions: Callable[[int, dict[str, int]], Awaitable[Any]],
    rewind: Callable[[int, dict[str, int]], Awaitable[Any]],
    on_fatal: Callable[[BaseException], None],
) -> AccountRuntime:
    """The account step's runtime of a worker process, on its own Redis namespace."""
    from tierstream.stores.redis_async import AsyncRedisStore  # noqa: PLC0415

    store = account_store(settings)
    engine = AccountScorer(config).scorer
    return AccountRuntime(
        settings,
        AsyncRedisStore(store),
        store,
        engine,
        settings.make_clock,
        send,
        owns,
        commit_positions,
        None,
        on_fatal,
        rewind,
    )


def split_contributions(
    by_shard: dict[int, list[RawMessage]], topic: str
) -> tuple[dict[int, list[RawMessage]], dict[int, list[RawMessage]]]:
    """A fetched batch split into (input messages, contribution updates), by partition."""
    inputs: dict[int, list[RawMessage]] = {}
    contributions: dict[int, list[RawMessage]] = {}
    for partition, messages in by_shard.items():
        for message in messages:
            into = contributions if message.topic == topic else inputs
            into.setdefault(partition, []).append(message)
    return inputs, contributions
