"""Custom criteria: customer traits scored 1..5, and engagement kinds weighted by kind.

A trait is a number, a string or a boolean the business knows about a customer (referrals,
paying on time, fees, strategic fit), arriving on the profiles topic. The weighted tier
plan may use any trait as a criterion next to R, F, M and E: a numeric trait is scored by
four ascending cut points (like the score thresholds, higher is better), a categorical one
(string or boolean) by a mapping to 1..5. A customer without the trait, or with a value of
the other kind, scores the criterion's ``default``.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TraitValue = bool | str | Decimal
# Trait and engagement-kind names: what a YAML key and a JSON field name can both carry.
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
TraitName = Annotated[str, Field(pattern=NAME_PATTERN)]
Score = Annotated[int, Field(ge=1, le=5)]
# Kinds may count against the customer (a support ticket as cost to serve): signed weights.
KindWeight = Annotated[Decimal, Field(ge=Decimal(-100), le=Decimal(100), allow_inf_nan=False)]
# The scores' own criteria: a trait may not take one of their names.
SCORE_KEYS = ("r", "f", "m", "e")


class TraitCriterion(BaseModel):
    """How one trait scores 1..5: ``thresholds`` (numbers) or ``map`` (strings, booleans)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    thresholds: tuple[Decimal, Decimal, Decimal, Decimal] | None = None
    map: dict[str, Score] | None = None
    default: Score = 1  # the score of a customer without this trait

    @field_validator("map", mode="before")
    @classmethod
    def _boolean_keys(cls, value: Any) -> Any:
        # YAML reads `true:` as a boolean key; a trait's JSON true is matched as "true".
        if isinstance(value, dict):
            return {_category(k) if isinstance(k, bool) else k: v for k, v in value.items()}
        return value

    @field_validator("thresholds")
    @classmethod
    def _ascending(cls, value: tuple[Decimal, ...] | None) -> tuple[Decimal, ...] | None:
        if value is not None:
            if not all(cut.is_finite() for cut in value):
                raise ValueError("thresholds must be finite numbers")
            if any(b <= a for a, b in itertools.pairwise(value)):
                raise ValueError("thresholds must be strictly ascending")
        return value

    @model_validator(mode="after")
    def _one_scale(self) -> TraitCriterion:
        if (self.thresholds is None) == (self.map is None):
            raise ValueError("a trait criterion needs exactly one of thresholds (numbers) or map")
        if self.map is not None and not self.map:
            raise ValueError("a trait criterion's map may not be empty")
        return self

    def score(self, value: TraitValue | None) -> int:
        """The 1..5 score of a trait value (``default`` when missing or of the other kind)."""
        if value is None:
            return self.default
        if self.thresholds is not None:
            if isinstance(value, bool) or not isinstance(value, Decimal):
                return self.default
            return 1 + sum(1 for cut in self.thresholds if value >= cut)
        assert self.map is not None
        if isinstance(value, Decimal):
            return self.default
        return self.map.get(_category(value), self.default)


def _category(value: bool | str) -> str:
    """A categorical value as a map key: booleans as ``true``/``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


TraitScore = tuple[str, TraitValue | None, int]  # (trait, its value or None, its score)


def trait_scores(
    criteria: dict[str, TraitCriterion], traits: dict[str, TraitValue] | None
) -> tuple[TraitScore, ...]:
    """Each criterion's trait value and score, in the plan's order."""
    held = traits or {}
    return tuple(
        (name, held.get(name), criterion.score(held.get(name)))
        for name, criterion in criteria.items()
    )


def describe_traits(scored: tuple[TraitScore, ...]) -> str:
    """``traits: referrals 3→4, paying_on_time true→5, fees missing→1``."""
    parts = []
    for name, value, points in scored:
        shown = "missing" if value is None else format_trait(value)
        parts.append(f"{name} {shown}→{points}")
    return "traits: " + ", ".join(parts)


def format_trait(value: TraitValue) -> str:
    if isinstance(value, bool):
        return _category(value)
    if isinstance(value, Decimal):
        return f"{value:f}"
    return repr(value)


def check_weights(
    weights: dict[str, Decimal], criteria: dict[str, TraitCriterion], scale: str
) -> None:
    """The tier weights' rules (``ValueError`` naming the first broken one)."""
    for name in criteria:
        if name in SCORE_KEYS:
            raise ValueError(f"trait criterion {name!r} takes the name of a score")
    unknown = sorted(k for k in weights if k not in SCORE_KEYS and k not in criteria)
    if unknown:
        raise ValueError(
            f"tier weights name {', '.join(unknown)}: neither r, f, m, e nor a trait "
            "criterion under tiers.traits"
        )
    unweighted = sorted(name for name in criteria if name not in weights)
    if unweighted:
        raise ValueError(f"trait criteria without a tier weight: {', '.join(unweighted)}")
    if any(w < 0 for w in weights.values()):
        raise ValueError("tier weights must be >= 0")
    total = sum(weights.values(), Decimal(0))
    if scale == "fractions":
        if total != 1:
            raise ValueError(f"tier weights must sum to 1, got {total}")
    else:
        if any(w > 10 for w in weights.values()):
            raise ValueError("tier weights on the 1-10 scale must be between 0 and 10")
        if total <= 0:
            raise ValueError("at least one tier weight must be above 0")


def normalised(weights: dict[str, Decimal]) -> dict[str, Decimal]:
    """Weights divided by their sum; fractions that already sum to 1 are kept as given, so
    a plan of fractions scores (and is explained) exactly as it always was."""
    total = sum(weights.values(), Decimal(0))
    if total == 1:
        return dict(weights)
    return {key: weight / total for key, weight in weights.items()}


def kind_weighted_total(
    engagement: dict[str, Decimal], kind_weights: dict[str, Decimal], default: Decimal
) -> Decimal:
    """The engagement total with each kind's summed event weights times its configured
    weight (``default`` for kinds not listed); a negative weight counts against."""
    total = Decimal(0)
    for kind, amount in engagement.items():
        total += amount * kind_weights.get(kind, default)
    return total
