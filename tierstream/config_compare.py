"""What a new scoring config would do: every customer placed under two configs, compared.

Pure: given each customer's placement (tier, segment, revenue) before and after, it
builds the migration matrices (rows: before, columns: after), the revenue held by each
tier before and after, and the customers whose tier or segment moves. ``tierstream
config propose`` feeds it from two replays of a history file or from the live state.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from scoring.config import ScoringConfig
from scoring.engine import Scorer
from scoring.state import CustomerState

# A customer with no purchase in the window has no tier or segment: shown under this name.
UNPLACED = "(none)"


@dataclass(frozen=True, slots=True)
class Placement:
    tier: str | None
    segment: str | None
    # The customer's net spend in the config's window, base currency.
    revenue: Decimal
    r: int | None = None
    f: int | None = None
    m: int | None = None
    why: str = ""


def placement(scorer: Scorer, state: CustomerState) -> Placement:
    """Where ``state`` (already scored by ``scorer``) stands under ``scorer``'s config."""
    day = state.clock_day if state.clock_day is not None else 0
    scores = state.scores
    return Placement(
        state.tier,
        state.segment,
        scorer.values(state, day).monetary,
        scores.r if scores else None,
        scores.f if scores else None,
        scores.m if scores else None,
        scorer.explain(state),
    )


@dataclass(frozen=True)
class Comparison:
    customers: int
    tiers: dict[str, dict[str, int]]  # before -> after -> customers
    segments: dict[str, dict[str, int]]
    revenue_before: dict[str, Decimal]
    revenue_after: dict[str, Decimal]
    moved: list[tuple[str, Placement, Placement]]  # tier or segment differs, by customer id

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (amounts as decimal strings, exact to the cent)."""
        return {
            "customers": self.customers,
            "tiers": {"from_to": self.tiers},
            "segments": {"from_to": self.segments},
            "revenue": {
                "before": {k: str(v) for k, v in self.revenue_before.items()},
                "after": {k: str(v) for k, v in self.revenue_after.items()},
            },
            "tier_changes": sum(1 for _, before, after in self.moved if before.tier != after.tier),
        }


def _name(value: str | None) -> str:
    return UNPLACED if value is None else value


def _ordered(known: Iterable[str], seen: Iterable[str]) -> list[str]:
    """Configured names in config order, then any others seen, then the unplaced."""
    names = list(dict.fromkeys(known))
    names += sorted(set(seen) - set(names) - {UNPLACED})
    return [*names, UNPLACED] if UNPLACED in set(seen) else names


def _matrix(pairs: Counter[tuple[str, str]], rows: list[str], cols: list[str]) -> dict[str, Any]:
    return {row: {col: pairs[(row, col)] for col in cols} for row in rows}


def tier_names(config: ScoringConfig) -> list[str]:
    return [level.name for level in config.tiers.levels]


def segment_names(config: ScoringConfig) -> list[str]:
    return list(dict.fromkeys(rule.name for rule in config.segments))


def compare(
    before: Mapping[str, Placement],
    after: Mapping[str, Placement],
    current: ScoringConfig,
    proposed: ScoringConfig,
) -> Comparison:
    """Compare two placements of the same customers (a customer missing on one side
    counts as unplaced there, with no revenue)."""
    nobody = Placement(None, None, Decimal(0))
    ids = sorted(set(before) | set(after))
    tier_pairs: Counter[tuple[str, str]] = Counter()
    segment_pairs: Counter[tuple[str, str]] = Counter()
    revenue_before: defaultdict[str, Decimal] = defaultdict(Decimal)
    revenue_after: defaultdict[str, Decimal] = defaultdict(Decimal)
    moved = []
    for customer_id in ids:
        old, new = before.get(customer_id, nobody), after.get(customer_id, nobody)
        tier_pairs[(_name(old.tier), _name(new.tier))] += 1
        segment_pairs[(_name(old.segment), _name(new.segment))] += 1
        revenue_before[_name(old.tier)] += old.revenue
        revenue_after[_name(new.tier)] += new.revenue
        if old.tier != new.tier or old.segment != new.segment:
            moved.append((customer_id, old, new))
    tiers_before = _ordered(tier_names(current), (a for a, _ in tier_pairs))
    tiers_after = _ordered(tier_names(proposed), (b for _, b in tier_pairs))
    segments_before = _ordered(segment_names(current), (a for a, _ in segment_pairs))
    segments_after = _ordered(segment_names(proposed), (b for _, b in segment_pairs))
    return Comparison(
        customers=len(ids),
        tiers=_matrix(tier_pairs, tiers_before, tiers_after),
        segments=_matrix(segment_pairs, segments_before, segments_after),
        revenue_before={t: revenue_before[t] for t in tiers_before},
        revenue_after={t: revenue_after[t] for t in tiers_after},
        moved=moved,
    )


def change_record(customer_id: str, before: Placement, after: Placement) -> dict[str, Any]:
    """One line of ``--changes-out``."""
    return {
        "customer_id": customer_id,
        "tier_before": before.tier,
        "tier_after": after.tier,
        "segment_before": before.segment,
        "segment_after": after.segment,
        "scores_before": {"r": before.r, "f": before.f, "m": before.m},
        "scores_after": {"r": after.r, "f": after.f, "m": after.m},
        "revenue_before": str(before.revenue),
        "revenue_after": str(after.revenue),
        "why_after": after.why,
    }
