"""B2B accounts: a tier for each client account, aggregated exactly from its contacts.

A customer (a *contact*) belongs to the account named on its latest event, latest by
(occurred_at, event_id) so that the order events arrive in does not matter. Whenever a
contact's window totals or its account change, it sends its account a *contribution
update*: a full snapshot of what it adds (its day totals inside the window, its engagement
days, its first and last purchase), numbered by a per-contact sequence. A move sends two:
an empty one to the account it left, a full one to the account it joined.

An account's state keeps each current contact's latest contribution and their sum, held as
a ``CustomerState`` of the account (day totals, first and last purchase) so that the very
``Scorer`` that scores customers scores it, with the account plan of the configuration:
same window semantics, same time-driven changes at their exact moment, same version chain
and explanations. Because updates are snapshots numbered per contact, applying one twice,
or an older one after a newer, changes nothing: that is what makes the streaming path's
at-least-once delivery of updates exact (docs/state-layout.md, "Accounts").
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from scoring.config import ScoringConfig
from scoring.engine import Change, Outcome, Scorer, leaving_change
from scoring.events import Cause, InputEvent, PurchaseEvent
from scoring.state import ContactLink, CustomerState, DayTotals

# Account change ids live in their own namespace: an account and a customer may share an id.
ACCOUNT_CHANGE_NAMESPACE = uuid.UUID("0b6a3f7e-52c1-4d0e-8f43-6c1d2a9e4b85")
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one contact adds to its account: day totals in the window and purchase bounds."""

    days: tuple[tuple[int, int, Decimal], ...]  # (day, purchases, net), ascending
    engagement: tuple[tuple[int, tuple[tuple[str, Decimal], ...]], ...]
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None

    @classmethod
    def of(cls, state: CustomerState) -> Contribution:
        return cls(
            tuple((d, t.purchases, t.net) for d, t in sorted(state.days.items())),
            tuple(
                (d, tuple(sorted(kinds.items())))
                for d, kinds in sorted(state.engagement_days.items())
            ),
            state.first_purchase_at,
            state.last_purchase_at,
        )

    def to_list(self) -> list[Any]:
        return [
            [[d, n, str(net)] for d, n, net in self.days],
            [[d, [[k, str(w)] for k, w in kinds]] for d, kinds in self.engagement],
            _iso(self.first_purchase_at),
            _iso(self.last_purchase_at),
        ]

    @classmethod
    def from_list(cls, raw: list[Any]) -> Contribution:
        days, engagement, first, last = raw
        return cls(
            tuple((int(d), int(n), Decimal(net)) for d, n, net in days),
            tuple((int(d), tuple((k, Decimal(w)) for k, w in kinds)) for d, kinds in engagement),
            _moment(first),
            _moment(last),
        )


@dataclass(frozen=True, slots=True)
class ContributionUpdate:
    """One contact's contribution to one account as of the contact's ``seq``.

    ``contribution`` None: the contact left this account (for ``previous_account_id`` or
    for none). ``cause`` and ``note`` describe the event behind it, for the explanation.
    """

    account_id: str
    contact_id: str
    seq: int
    contribution: Contribution | None
    occurred_at: datetime
    cause: Cause
    note: str
    previous_account_id: str | None = None

    @property
    def customer_id(self) -> str:
        """The id of the state it updates: the account's (stored like a customer's)."""
        return self.account_id

    def to_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "contact_id": self.contact_id,
            "seq": self.seq,
            "contribution": None if self.contribution is None else self.contribution.to_list(),
            "occurred_at": self.occurred_at.isoformat(),
            "cause": self.cause,
            "note": self.note,
            "previous_account_id": self.previous_account_id,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ContributionUpdate:
        contribution = raw["contribution"]
        return cls(
            raw["account_id"],
            raw["contact_id"],
            int(raw["seq"]),
            None if contribution is None else Contribution.from_list(contribution),
            datetime.fromisoformat(raw["occurred_at"]),
            raw["cause"],
            raw["note"],
            raw.get("previous_account_id"),
        )


def contact_updates(
    state: CustomerState, event: InputEvent, outcome: Outcome
) -> list[ContributionUpdate]:
    """The contribution updates an applied event of ``state``'s customer sends (in order).

    Call it after the event was applied to ``state``; it moves the customer's account link.
    Cheap to skip: nothing is sent for a customer no event has tied to an account.
    """
    link = state.account
    if outcome is Outcome.DUPLICATE or (link is None and event.account_id is None):
        return []
    current = None if link is None else link.account_id
    if link is None or (event.occurred_at, event.event_id) > (link.at, link.event_id):
        target, at, event_id = event.account_id, event.occurred_at, event.event_id
    else:
        target, at, event_id = current, link.at, link.event_id
    seq = 0 if link is None else link.seq
    if target is None and current is None:
        state.account = ContactLink(None, at, event_id, seq)
        return []
    seq += 1
    state.account = ContactLink(target, at, event_id, seq)
    cause: Cause = event.kind if isinstance(event, PurchaseEvent) else "engagement"
    note = _event_note(state.customer_id, event)
    updates = []
    moved = current != target
    if current is not None and moved:
        note_left = f"{note}; contact left for {target}" if target else f"{note}; contact left"
        updates.append(
            ContributionUpdate(
                current, state.customer_id, seq, None, event.occurred_at, cause, note_left
            )
        )
    if target is not None:
        updates.append(
            ContributionUpdate(
                target,
                state.customer_id,
                seq,
                Contribution.of(state),
                event.occurred_at,
                cause,
                f"{note}; contact joined" if moved else note,
                current if moved else None,
            )
        )
    return updates


def leave_update(state: CustomerState, moment: datetime, note: str) -> ContributionUpdate | None:
    """The update that takes a customer out of its account (its data is erased)."""
    link = state.account
    if link is None or link.account_id is None:
        return None
    seq = link.seq + 1
    state.account = ContactLink(None, link.at, link.event_id, seq)
    return ContributionUpdate(
        link.account_id, state.customer_id, seq, None, moment, "erasure", note
    )


@dataclass(slots=True)
class AccountState:
    """One account: its contacts' latest contributions and their sum (``totals``)."""

    account_id: str
    # The aggregate, scored like a customer: its id is the account's.
    totals: CustomerState
    # contact id -> (seq, contribution) of its current contacts
    contacts: dict[str, tuple[int, Contribution]] = field(default_factory=dict)
    # contact id -> seq of the update that took it out: an older update may not bring it back
    departed: dict[str, int] = field(default_factory=dict)

    @classmethod
    def new(cls, account_id: str) -> AccountState:
        return cls(account_id, CustomerState(account_id))

    @classmethod
    def of(cls, totals: CustomerState) -> AccountState:
        """The account held in ``totals`` (as a store loads it: a customer-shaped state)."""
        members = totals.members or {}
        contacts = {
            cid: (int(seq), Contribution.from_list(c))
            for cid, (seq, c) in members.get("m", {}).items()
        }
        departed = {cid: int(seq) for cid, seq in members.get("x", {}).items()}
        return cls(totals.customer_id, totals, contacts, departed)

    def persist(self) -> CustomerState:
        """``totals`` with the contributions written into it: what a store keeps."""
        members: dict[str, Any] = {}
        if self.contacts:
            members["m"] = {
                cid: [seq, c.to_list()] for cid, (seq, c) in sorted(self.contacts.items())
            }
        if self.departed:
            members["x"] = dict(sorted(self.departed.items()))
        self.totals.members = members
        return self.totals

    def to_dict(self) -> dict[str, Any]:
        return self.persist().to_dict()

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AccountState:
        return cls.of(CustomerState.from_dict(raw))


class AccountChange(Change):
    """A tier change of an account: published with ``"entity": "account"`` and ``account_id``."""

    __slots__ = ()

    @property
    def account_id(self) -> str:
        return self.customer_id

    @property
    def event_id(self) -> str:
        event_id = self._event_id
        if event_id is None:
            event_id = self._event_id = account_change_event_id(self.customer_id, self.version)
        return event_id

    def to_json(self, emitted_at: datetime | None = None) -> dict[str, Any]:
        out = super().to_json(emitted_at)
        event_id, account_id = out.pop("event_id"), out.pop("customer_id")
        return {"entity": "account", "event_id": event_id, "account_id": account_id, **out}


def account_change_event_id(account_id: str, version: int) -> str:
    """uuid5(ACCOUNT_CHANGE_NAMESPACE, "<account_id>\\0<version>")."""
    return str(uuid.uuid5(ACCOUNT_CHANGE_NAMESPACE, f"{account_id}\x00{version}"))


class AccountEngine(Scorer):
    """The customer ``Scorer`` on an account's aggregate: its changes are ``AccountChange``s
    (so a shard step built for customers publishes them as account changes)."""

    def advance_to_day(self, state: CustomerState, target: int) -> list[Change]:
        return _as_account(super().advance_to_day(state, target))

    def rescore(
        self, state: CustomerState, now: datetime, cause: Cause, because: str
    ) -> list[Change]:
        return _as_account(super().rescore(state, now, cause, because))


class AccountScorer:
    """Applies contribution updates to accounts and scores them with the account plan."""

    def __init__(self, config: ScoringConfig, engine: AccountEngine | None = None) -> None:
        # ``engine``: one already built on the account plan (``config`` is then unused).
        self.scorer = engine or AccountEngine(config.account_config())
        self.window = self.scorer.window

    def apply(
        self, account: AccountState, update: ContributionUpdate, now: datetime
    ) -> list[Change]:
        """Fold ``update`` into ``account`` (mutated) as of ``now``; the changes, in order."""
        totals = account.totals
        changes = self.scorer.advance(totals, now)
        contact = update.contact_id
        known = account.contacts.get(contact)
        applied_seq = known[0] if known is not None else account.departed.get(contact, 0)
        if update.seq <= applied_seq:
            return changes  # a repeat, or older than what the account holds
        old = None if known is None else known[1]
        if old is not None:
            self._subtract(totals, old)
        new = update.contribution
        if new is not None:
            self._add(totals, new)
            account.contacts[contact] = (update.seq, new)
            account.departed.pop(contact, None)
        else:
            account.contacts.pop(contact, None)
            account.departed[contact] = update.seq
        _purchase_bounds(account, old, new)
        totals.cached_moves = totals.scored = None
        if not account.contacts:
            change = self._emptied(totals, update)
        else:
            # The clock is already at ``now``: this only re-scores, dated at the event.
            rescored = self.scorer.rescore(totals, update.occurred_at, update.cause, update.note)
            change = rescored[0] if rescored else None
        if change is not None:
            changes.append(change)
        return changes

    def advance(self, account: AccountState, now: datetime) -> list[Change]:
        """Bring the account to ``now``: its time-driven changes, at their moments."""
        return self.scorer.advance(account.totals, now)

    def advance_to_day(self, account: AccountState, day: int) -> list[Change]:
        return self.scorer.advance_to_day(account.totals, day)

    def next_rescore_day(self, account: AccountState) -> int | None:
        return self.scorer.next_rescore_day(account.totals)

    def next_rescore_at(self, account: AccountState) -> datetime | None:
        return self.scorer.next_rescore_at(account.totals)

    def record(self, account: AccountState, as_of: datetime | None = None) -> dict[str, Any]:
        """The published account record (``--accounts-out``, export, the API)."""
        rec = self.scorer.record(account.totals, as_of)
        del rec["customer_id"]
        return {"account_id": account.account_id, "contacts": len(account.contacts), **rec}

    def _add(self, totals: CustomerState, contribution: Contribution) -> None:
        clock = totals.clock_day
        lo = None if self.window is None or clock is None else clock - self.window
        floor = totals.prune_floor
        for d, purchases, net in contribution.days:
            if lo is not None and d <= lo:
                continue  # already out of the window: it can never count again
            day = totals.days.get(d)
            if day is None:
                day = totals.days[d] = DayTotals()
            day.purchases += purchases
            day.net += net
            if floor is not None and d < floor:
                totals.prune_floor = floor = d
        for d, kinds in contribution.engagement:
            if lo is not None and d <= lo:
                continue
            into = totals.engagement_days.setdefault(d, {})
            for kind, weight in kinds:
                into[kind] = into.get(kind, _ZERO) + weight
            if floor is not None and d < floor:
                totals.prune_floor = floor = d

    @staticmethod
    def _subtract(totals: CustomerState, contribution: Contribution) -> None:
        # A day the account no longer holds has left its window, with every share of it.
        for d, purchases, net in contribution.days:
            day = totals.days.get(d)
            if day is None:
                continue
            day.purchases -= purchases
            day.net -= net
            if day.purchases == 0 and day.net == 0:
                del totals.days[d]
        for d, kinds in contribution.engagement:
            into = totals.engagement_days.get(d)
            if into is None:
                continue
            for kind, weight in kinds:
                left = into.get(kind, _ZERO) - weight
                if left == 0:
                    into.pop(kind, None)
                else:
                    into[kind] = left
            if not into:
                del totals.engagement_days[d]

    def _emptied(self, totals: CustomerState, update: ContributionUpdate) -> Change | None:
        """The last contact left: the account leaves its tier and segment."""
        totals.scores = None
        if totals.tier is None and totals.segment is None:
            return None
        totals.version += 1
        change = leaving_change(
            totals, update.cause, f"{update.note}; no contact left", update.occurred_at
        )
        totals.tier = totals.segment = None
        return _as_account([change])[0]


def _purchase_bounds(
    account: AccountState, old: Contribution | None, new: Contribution | None
) -> None:
    """First and last purchase over the current contacts, rescanned only when the contact
    that held one of them changed it."""
    totals = account.totals
    first, last = totals.first_purchase_at, totals.last_purchase_at
    if old is not None and (
        (old.first_purchase_at is not None and old.first_purchase_at == first)
        or (old.last_purchase_at is not None and old.last_purchase_at == last)
    ):
        firsts = [c.first_purchase_at for _, c in account.contacts.values()]
        lasts = [c.last_purchase_at for _, c in account.contacts.values()]
        totals.first_purchase_at = min((f for f in firsts if f is not None), default=None)
        totals.last_purchase_at = max((t for t in lasts if t is not None), default=None)
        return
    if new is not None:
        if new.first_purchase_at is not None and (first is None or new.first_purchase_at < first):
            totals.first_purchase_at = new.first_purchase_at
        if new.last_purchase_at is not None and (last is None or new.last_purchase_at > last):
            totals.last_purchase_at = new.last_purchase_at


def _as_account(changes: list[Change]) -> list[Change]:
    out: list[Change] = []
    for change in changes:
        account = AccountChange.__new__(AccountChange)
        for name in Change.__slots__:
            object.__setattr__(account, name, getattr(change, name))
        account._event_id = None
        out.append(account)
    return out


def _event_note(contact_id: str, event: InputEvent) -> str:
    when = event.occurred_at.date().isoformat()
    if isinstance(event, PurchaseEvent):
        return f"contact {contact_id}: {event.kind} of {event.amount} {event.currency} on {when}"
    return f"contact {contact_id}: {event.kind} (weight {event.weight}) on {when}"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


__all__ = [
    "AccountChange",
    "AccountEngine",
    "AccountScorer",
    "AccountState",
    "Contribution",
    "ContributionUpdate",
    "account_change_event_id",
    "contact_updates",
    "leave_update",
]
