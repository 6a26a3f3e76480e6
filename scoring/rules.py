"""Tier and segment decisions from scores, each with the human-readable rule behind it."""

from __future__ import annotations

from decimal import Decimal

from scoring.config import ScoringConfig
from scoring.criteria import TraitScore, describe_traits, normalised
from scoring.state import Scores

NO_TRAITS: tuple[TraitScore, ...] = ()


def weighted_score(
    config: ScoringConfig, scores: Scores, traits: tuple[TraitScore, ...] = NO_TRAITS
) -> Decimal:
    """The weighted sum of the scores and the trait criteria's scores (weights normalised)."""
    w = normalised(config.tiers.weights)
    zero = Decimal(0)
    total = (
        w.get("r", zero) * scores.r
        + w.get("f", zero) * scores.f
        + w.get("m", zero) * scores.m
        + w.get("e", zero) * scores.e
    )
    for name, _, points in traits:
        total += w[name] * points
    return total


def classify(
    config: ScoringConfig, scores: Scores, traits: tuple[TraitScore, ...] = NO_TRAITS
) -> tuple[str, str]:
    """The tier and the segment for these scores (first matching level and rule win).

    ``traits``: the trait criteria's scores (``scoring.criteria.trait_scores``), when the
    plan has any."""
    total = weighted_score(config, scores, traits)
    level = next(lv for lv in config.tiers.levels if total >= lv.min_score)
    segment = next(s for s in config.segments if s.matches(scores.r, scores.f, scores.m))
    return level.name, segment.name


def explain(
    config: ScoringConfig, scores: Scores, traits: tuple[TraitScore, ...] = NO_TRAITS
) -> tuple[str, str]:
    """The rules behind ``classify``, in words."""
    total = weighted_score(config, scores, traits)
    tier, segment = classify(config, scores, traits)
    level = next(lv for lv in config.tiers.levels if lv.name == tier)
    points = {name: score for name, _, score in traits}
    terms = " + ".join(
        f"{weight}×{key.upper()}{getattr(scores, key)}"
        if key in ("r", "f", "m", "e")
        else f"{weight}×{key} {points[key]}"
        for key, weight in config.tiers.weights.items()
        if weight
    )
    weights = config.tiers.weights
    divisor = sum(weights.values(), Decimal(0))
    if divisor != 1:
        terms = f"({terms})/{divisor}"
        total = total.quantize(Decimal("0.001")).normalize()  # a quotient: 28 digits
    tier_rule = f"tier {tier}: weighted score {total:f} = {terms} ≥ {level.min_score}"
    if traits:
        tier_rule += f" ({describe_traits(traits)})"
    fm = (scores.f + scores.m + 1) // 2
    segment_rule = f"segment {segment}: R{scores.r} FM{fm} (F{scores.f} M{scores.m})"
    return tier_rule, segment_rule
