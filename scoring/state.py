"""Per-customer rolling state and its compact, lossless serialization.

Purchases and engagement are kept as per-UTC-day totals inside the window, which is what
makes late, out-of-order and duplicated events exact: a day total does not care in which
order its events came, and a remembered event-id digest makes a repeat a no-op. Totals
and digests are dropped once their day has left the window for good.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from scoring.criteria import TraitValue


@dataclass(frozen=True, slots=True)
class Scores:
    """The four 1..5 scores: recency, frequency, monetary, engagement."""

    r: int
    f: int
    m: int
    e: int


@dataclass(slots=True)
class DayTotals:
    purchases: int = 0
    net: Decimal = field(default_factory=Decimal)  # purchases minus refunds, base currency


@dataclass(slots=True)
class Archived:
    """Purchase days that have left the window, folded into lifetime totals when pruned.

    What lifetime value (purchase days over the customer's life, mean spend) and retention
    (did the customer buy in the window before this one) need, and the window drops: three
    numbers, written only when a day is pruned (never on the per-event path).
    """

    purchase_days: int = 0  # days with at least one purchase
    net: Decimal = field(default_factory=Decimal)  # their net amount, base currency
    last_day: int | None = None  # the latest of them (None: no purchase day left yet)


@dataclass(frozen=True, slots=True)
class ContactLink:
    """A customer's link to a B2B account (scoring/accounts.py).

    The account is the one named on the customer's latest event, latest by (occurred_at,
    event_id), so that arrival order does not matter; ``account_id`` None: that event named
    none. ``seq`` numbers the customer's contributions to accounts: each new one is higher,
    which is what makes applying them idempotent.
    """

    account_id: str | None
    at: datetime
    event_id: str
    seq: int


@dataclass(slots=True)
class CustomerState:
    customer_id: str
    days: dict[int, DayTotals] = field(default_factory=dict)
    engagement_days: dict[int, dict[str, Decimal]] = field(default_factory=dict)
    # digest of an applied event id -> its day, kept while that day is inside the window
    seen: dict[str, int] = field(default_factory=dict)
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    # the latest UTC day this state was brought to; as-of queries before it are refused
    clock_day: int | None = None
    scores: Scores | None = None  # None until the first purchase
    tier: str | None = None
    segment: str | None = None
    # behaviour segment (id, label) from the behaviour model, when one is in use
    behaviour: tuple[int, str] | None = None
    version: int = 0
    # totals of the purchase days pruned from the window (None: nothing pruned yet)
    archived: Archived | None = None
    # What this customer adds to the learned behaviour statistics (behaviour id or -1, then
    # its feature vector in fixed point), when behaviours are learned from the stream
    # (models/learning.py): taken out again when it is re-learned. None: not learned.
    learned: list[int] | None = None
    # The customer's traits from the profiles topic (scoring/profiles.py), and the
    # ``updated_at`` of the update that set (or deleted) them: older updates are ignored.
    traits: dict[str, TraitValue] | None = None
    traits_at: datetime | None = None
    # The B2B account link (None: no event of this customer ever named an account).
    account: ContactLink | None = None
    # Only in an account's aggregate (scoring/accounts.py): its contacts' contributions,
    # JSON-ready, so that an account is stored like a customer.
    members: dict[str, Any] | None = None
    # When this customer is one of its shard's seeds of the first model: the seed's ordinal
    # in the shard, then the seed vector as written (so an erasure can take it out again).
    learned_seed: list[int] | None = None
    # Derived, never persisted: the scorer's cached time-driven candidate days.
    cached_moves: Moves | None = field(default=None, compare=False, repr=False)
    # Derived, never persisted: a lower bound of the days in ``days``, ``engagement_days``
    # and ``seen`` (None: unknown), so that pruning skips the scan while nothing is due.
    prune_floor: int | None = field(default=None, compare=False, repr=False)
    # Derived, never persisted: (scorer, day, frequency, monetary) of the last scoring, until
    # an event changes the day totals: the "before" of the next inactivity reason.
    scored: tuple[object, int, int, Decimal] | None = field(default=None, compare=False, repr=False)

    def copy(self) -> CustomerState:
        """An independent copy (day totals are mutable, so they are copied too)."""
        clone = copy.copy(self)
        clone.days = {d: DayTotals(t.purchases, t.net) for d, t in self.days.items()}
        clone.engagement_days = {d: dict(k) for d, k in self.engagement_days.items()}
        clone.seen = dict(self.seen)
        archived = self.archived
        if archived is not None:
            clone.archived = Archived(archived.purchase_days, archived.net, archived.last_day)
        if self.traits is not None:
            clone.traits = dict(self.traits)
        clone.cached_moves = None  # the clone is brought forward on its own
        return clone

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-ready form (short keys: this is what the stores persist)."""
        out: dict[str, Any] = {"c": self.customer_id, "v": self.version}
        if self.days:
            out["p"] = [[d, t.purchases, str(t.net)] for d, t in sorted(self.days.items())]
        if self.engagement_days:
            out["g"] = [
                [d, {k: str(w) for k, w in sorted(kinds.items())}]
                for d, kinds in sorted(self.engagement_days.items())
            ]
        if self.seen:
            out["s"] = self.seen
        if self.first_purchase_at is not None:
            out["fp"] = self.first_purchase_at.isoformat()
        if self.last_purchase_at is not None:
            out["lp"] = self.last_purchase_at.isoformat()
        if self.clock_day is not None:
            out["k"] = self.clock_day
        if self.scores is not None:
            sc = self.scores
            out["sc"] = [sc.r, sc.f, sc.m, sc.e]
        if self.tier is not None:
            out["t"] = self.tier
        if self.segment is not None:
            out["sg"] = self.segment
        if self.behaviour is not None:
            out["b"] = list(self.behaviour)
        if self.archived is not None:
            a = self.archived
            out["a"] = [a.purchase_days, str(a.net), a.last_day]
        if self.learned is not None:
            out["l"] = self.learned
        if self.traits is not None:
            # Numbers as exact decimal strings, apart from the strings and booleans.
            out["tr"] = [
                {k: str(v) for k, v in sorted(self.traits.items()) if isinstance(v, Decimal)},
                {k: v for k, v in sorted(self.traits.items()) if not isinstance(v, Decimal)},
            ]
        if self.traits_at is not None:
            out["ta"] = self.traits_at.isoformat()
        if self.account is not None:
            link = self.account
            out["ac"] = [link.account_id, link.at.isoformat(), link.event_id, link.seq]
        if self.members is not None:
            out["am"] = self.members
        if self.learned_seed is not None:
            out["ls"] = self.learned_seed
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CustomerState:
        state = cls(customer_id=raw["c"], version=raw.get("v", 0))
        state.days = {d: DayTotals(n, Decimal(net)) for d, n, net in raw.get("p", ())}
        state.engagement_days = {
            d: {k: Decimal(w) for k, w in kinds.items()} for d, kinds in raw.get("g", ())
        }
        state.seen = dict(raw.get("s", {}))
        if "fp" in raw:
            state.first_purchase_at = datetime.fromisoformat(raw["fp"])
        if "lp" in raw:
            state.last_purchase_at = datetime.fromisoformat(raw["lp"])
        state.clock_day = raw.get("k")
        if "sc" in raw:
            state.scores = Scores(*raw["sc"])
        state.tier = raw.get("t")
        state.segment = raw.get("sg")
        if "b" in raw:
            behaviour_id, label = raw["b"]
            state.behaviour = (behaviour_id, label)
        if "a" in raw:
            purchase_days, net, last_day = raw["a"]
            state.archived = Archived(purchase_days, Decimal(net), last_day)
        if "l" in raw:
            state.learned = [int(v) for v in raw["l"]]
        if "tr" in raw:
            numbers, others = raw["tr"]
            traits: dict[str, TraitValue] = {k: Decimal(v) for k, v in numbers.items()}
            state.traits = traits | others
        if "ta" in raw:
            state.traits_at = datetime.fromisoformat(raw["ta"])
        if "ac" in raw:
            account_id, at, event_id, seq = raw["ac"]
            state.account = ContactLink(account_id, datetime.fromisoformat(at), event_id, seq)
        if "am" in raw:
            state.members = raw["am"]
        if "ls" in raw:
            state.learned_seed = [int(v) for v in raw["ls"]]
        return state


@dataclass(slots=True)
class Moves:
    """Cache of time-driven candidate days (and the next move once found) for one scorer."""

    owner: object
    days: list[int]
    last_day: int | None  # UTC day of the last purchase (recency is counted from it)
    # The last next-move search: (searched from clock day, scores searched with, day of the
    # next move or None for never, scores after, values after). It stays true for any clock
    # from that day up to the move as long as the scores are the same.
    next: tuple[int, Scores | None, int | None, Scores | None, Any] | None = None


def event_digest(event_id: str) -> str:
    """A short, stable digest of an event id (64 bits: collisions are negligible per customer)."""
    return hashlib.blake2b(event_id.encode("utf-8"), digest_size=8).hexdigest()
