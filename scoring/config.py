"""Scoring configuration: window, currencies, score thresholds, tier plan, segment map.

Loaded from YAML (configs/default.yaml is the shipped default). Validation happens
here, once, so that a bad config is a clear start-up error, never a wrong tier later.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from scoring.criteria import KindWeight, TraitCriterion, TraitName, check_weights
from scoring.reactions import ServiceLevel, Subscription, check_reactions

Score = Annotated[int, Field(ge=1, le=5)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Dimension(_Frozen):
    """Thresholds for one 1..5 score.

    ``thresholds`` holds 4 ascending cut points. For recency (lower is better) the score is
    ``1 + #{t : recency <= t}``; for the others (higher is better) ``1 + #{t : value >= t}``.
    ``hysteresis`` is the margin a value must clear past a cut point before the score moves
    off its current value: absolute for recency days and counts, relative for ``monetary``.
    """

    thresholds: tuple[Decimal, Decimal, Decimal, Decimal]
    hysteresis: Decimal = Decimal(0)

    @field_validator("thresholds")
    @classmethod
    def _ascending(cls, value: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
        if any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError("thresholds must be strictly ascending")
        return value

    @field_validator("hysteresis")
    @classmethod
    def _non_negative(cls, value: Decimal) -> Decimal:
        if value < 0:
            raise ValueError("hysteresis must be >= 0")
        return value


class EngagementDimension(Dimension):
    """The engagement score's cut points, and a weight per engagement kind.

    The total scored is each kind's summed event weights times the kind's weight here (1
    for kinds not listed); a negative weight makes a kind count against the customer.
    """

    kinds: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")], KindWeight] = Field(
        default_factory=dict
    )


class Scores(_Frozen):
    method: Literal["fixed", "quintiles"] = "fixed"
    # In quintile mode the cut points are recomputed from the population this often.
    refresh_days: int = Field(default=30, ge=1)
    recency: Dimension
    frequency: Dimension
    monetary: Dimension
    engagement: EngagementDimension


class TierLevel(_Frozen):
    name: str = Field(min_length=1)
    min_score: Decimal


class TierPlan(_Frozen):
    """A weighted scoring plan: tier = first level whose min_score the weighted sum reaches.

    ``weights`` are over r, f, m, e and the trait criteria in ``traits`` (scoring/criteria.py):
    fractions that sum to 1 (``scale: fractions``, the default) or weights of 0..10
    (``scale: 1-10``), divided by their sum. Either way the weighted score is on 1..5.
    """

    weights: dict[str, Decimal]
    scale: Literal["fractions", "1-10"] = "fractions"
    traits: dict[TraitName, TraitCriterion] = Field(default_factory=dict)
    levels: tuple[TierLevel, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> TierPlan:
        check_weights(self.weights, self.traits, self.scale)
        mins = [level.min_score for level in self.levels]
        if mins != sorted(mins, reverse=True):
            raise ValueError("tier levels must be listed from the highest min_score down")
        if mins[-1] > 1:
            raise ValueError("the last tier level must catch every customer (min_score <= 1)")
        return self


ScoreRange = tuple[Score, Score]


class SegmentRule(_Frozen):
    """A named segment: matches when every given score lies in its inclusive range."""

    name: str = Field(min_length=1)
    r: ScoreRange | None = None
    f: ScoreRange | None = None
    m: ScoreRange | None = None
    fm: ScoreRange | None = None  # round-half-up mean of f and m, as in the classic map

    def matches(self, r: int, f: int, m: int) -> bool:
        fm = (f + m + 1) // 2
        for rng, value in ((self.r, r), (self.f, f), (self.m, m), (self.fm, fm)):
            if rng is not None and not rng[0] <= value <= rng[1]:
                return False
        return True


class KpiSettings(_Frozen):
    # The KPI window P in days (docs/kpis.md); None: the scoring window (365 if lifetime).
    period_days: int | None = Field(default=None, ge=1)


class ClvSettings(_Frozen):
    """Lifetime value (docs/clv.md): the horizon and the least data a fit accepts."""

    horizon_days: int = Field(default=365, ge=1)
    min_customers: int = Field(default=100, ge=2)
    min_repeat_customers: int = Field(default=30, ge=2)  # Gamma-Gamma learns from these
    penalizer: Decimal = Field(default=Decimal(0), ge=0)


class ReviewSettings(_Frozen):
    """Thresholds of the segment review's suggestions (docs/kpis.md, "The segment review")."""

    # merge: a segment with less than this share of the customers ...
    min_customer_share: Decimal = Field(default=Decimal("0.02"), ge=0, le=1)
    # ... or within both of these of another: revenue per customer (relative) and retention
    close_revenue_per_customer: Decimal = Field(default=Decimal("0.10"), ge=0)
    close_retention: Decimal = Field(default=Decimal("0.05"), ge=0, le=1)
    # split: revenue per customer spread (coefficient of variation) above this
    max_revenue_spread: Decimal = Field(default=Decimal("2.0"), ge=0)
    # retire: empty, or lost more than this share of its customers since the last review
    shrink_share: Decimal = Field(default=Decimal("0.30"), ge=0, le=1)


class AccountPlan(_Frozen):
    """How accounts are scored (scoring/accounts.py): any part left out is the customer plan's.

    Accounts are scored on fixed cut points (their population is too small and too uneven
    for quintiles) over the customers' window: an account's totals are its contacts' own.
    """

    scores: Scores | None = None
    tiers: TierPlan | None = None
    segments: tuple[SegmentRule, ...] | None = Field(default=None, min_length=1)


class ScoringConfig(_Frozen):
    # A purchase on UTC day D counts at as-of T iff day(T) - window_days < D <= day(T);
    # None means lifetime.
    window_days: int | None = Field(default=365, ge=1)
    base_currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    # Units of base currency per unit of the keyed currency; unknown currencies are rejected.
    fx_rates: dict[str, Decimal] = Field(default_factory=dict)
    scores: Scores
    tiers: TierPlan
    segments: tuple[SegmentRule, ...] = Field(min_length=1)
    kpis: KpiSettings = KpiSettings()
    clv: ClvSettings = ClvSettings()
    review: ReviewSettings = ReviewSettings()
    # Reactions to tiers (scoring/reactions.py): they never change a score or a tier.
    service_levels: dict[str, ServiceLevel] = Field(default_factory=dict)
    subscriptions: tuple[Subscription, ...] = ()
    # Scoring plan of B2B accounts (None: the customer plan's scores, tiers and segments).
    accounts: AccountPlan | None = None

    @property
    def kpi_period_days(self) -> int:
        """The KPI window P: ``kpis.period_days``, else the scoring window (365: lifetime)."""
        if self.kpis.period_days is not None:
            return self.kpis.period_days
        return self.window_days if self.window_days is not None else 365

    @model_validator(mode="after")
    def _kpi_period_in_window(self) -> ScoringConfig:
        # Retention needs to know who bought in the previous KPI window; the state knows
        # that only while the KPI window is no longer than the scoring window.
        period = self.kpis.period_days
        if period is not None and self.window_days is not None and period > self.window_days:
            raise ValueError(
                f"kpis.period_days ({period}) may not exceed window_days ({self.window_days})"
            )
        return self

    @model_validator(mode="after")
    def _segments_total(self) -> ScoringConfig:
        # Every score combination must land in a segment: a gap would be a silent None.
        for r, f, m in itertools.product(range(1, 6), repeat=3):
            if not any(rule.matches(r, f, m) for rule in self.segments):
                raise ValueError(f"no segment rule matches r={r} f={f} m={m}; add a catch-all")
        return self

    @model_validator(mode="after")
    def _reactions_name_known_tiers(self) -> ScoringConfig:
        tiers = [level.name for level in self.tiers.levels]
        segments = list(dict.fromkeys(rule.name for rule in self.segments))
        check_reactions(self.service_levels, self.subscriptions, tiers, segments)
        return self

    @model_validator(mode="after")
    def _account_plan_valid(self) -> ScoringConfig:
        if self.accounts is not None:
            # The merged plan must pass every check a plan does (e.g. total segment rules).
            merged = self.account_config().model_dump(exclude={"accounts"})
            ScoringConfig.model_validate(merged)
        return self

    def account_config(self) -> ScoringConfig:
        """The configuration accounts are scored with: this one, with the account plan's
        parts in place of the customer plan's, on fixed cut points, with no reactions."""
        plan = self.accounts or AccountPlan()
        scores = plan.scores or self.scores
        return self.model_copy(
            update={
                "scores": scores.model_copy(update={"method": "fixed"}),
                "tiers": plan.tiers or self.tiers,
                "segments": plan.segments or self.segments,
                "accounts": None,
                "service_levels": {},
                "subscriptions": (),
            }
        )

    def to_base(self, amount: Decimal, currency: str) -> Decimal:
        """Convert to base currency, exact for the base and rounded to the cent otherwise."""
        if currency == self.base_currency:
            return amount
        rate = self.fx_rates.get(currency)
        if rate is None:
            raise UnknownCurrencyError(currency)
        return (amount * rate).quantize(Decimal("0.01"))


class UnknownCurrencyError(ValueError):
    def __init__(self, currency: str) -> None:
        super().__init__(f"no exchange rate configured for currency {currency!r}")


def load_config_text(text: str) -> ScoringConfig:
    """Parse and validate a YAML scoring configuration."""
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise ValueError("a scoring config must be a YAML mapping")
    if raw.get("window_days") == "lifetime":
        raw["window_days"] = None
    return ScoringConfig.model_validate(raw)
