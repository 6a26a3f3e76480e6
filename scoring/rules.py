"""Tier and segment decisions from scores, each with the human-readable rule behind it."""

from __future__ import annotations

from decimal import Decimal

from scoring.config import ScoringConfig
from scoring.state import Scores


def weighted_score(config: ScoringConfig, scores: Scores) -> Decimal:
    w = config.tiers.weights
    zero = Decimal(0)
    return (
        w.get("r", zero) * scores.r
        + w.get("f", zero) * scores.f
        + w.get("m", zero) * scores.m
        + w.get("e", zero) * scores.e
    )


def classify(config: ScoringConfig, scores: Scores) -> tuple[str, str]:
    """The tier and the segment for these scores (first matching level and rule win)."""
    total = weighted_score(config, scores)
    level = next(lv for lv in config.tiers.levels if total >= lv.min_score)
    segment = next(s for s in config.segments if s.matches(scores.r, scores.f, scores.m))
    return level.name, segment.name


def explain(config: ScoringConfig, scores: Scores) -> tuple[str, str]:
    """The rules behind ``classify``, in words."""
    total = weighted_score(config, scores)
    tier, segment = classify(config, scores)
    level = next(lv for lv in config.tiers.levels if lv.name == tier)
    terms = " + ".join(
        f"{weight}×{key.upper()}{getattr(scores, key)}"
        for key, weight in config.tiers.weights.items()
        if weight
    )
    tier_rule = f"tier {tier}: weighted score {total:f} = {terms} ≥ {level.min_score}"
    fm = (scores.f + scores.m + 1) // 2
    segment_rule = f"segment {segment}: R{scores.r} FM{fm} (F{scores.f} M{scores.m})"
    return tier_rule, segment_rule
