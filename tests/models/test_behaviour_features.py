from __future__ import annotations

import math
from decimal import Decimal

import pytest

from models.features import (
    DEFAULT_FEATURE_SPEC,
    CustomerFeaturesInput,
    FeatureSpec,
    build_features,
    signed_log1p,
    to_original_units,
)


def test_keys_follow_the_spec_order_whatever_the_engagement_order() -> None:
    spec = FeatureSpec(engagement_kinds=("email_click", "page_view"))
    a = build_features(
        CustomerFeaturesInput(3, 2, Decimal("10"), {"page_view": 4, "email_click": 1}), spec
    )
    b = build_features(
        CustomerFeaturesInput(3, 2, Decimal("10"), {"email_click": 1, "page_view": 4}), spec
    )
    assert list(a) == list(b) == list(spec.names)
    assert list(spec.names) == [
        "log_recency_days",
        "log_frequency",
        "slog_monetary",
        "slog_avg_order_value",
        "log_engagement_email_click",
        "log_engagement_page_view",
    ]


def test_default_spec_has_the_five_engagement_kinds() -> None:
    x = build_features(CustomerFeaturesInput(1, 1, Decimal(1)))
    assert len(x) == 9
    assert list(x) == list(DEFAULT_FEATURE_SPEC.names)
    assert all(x[f"log_engagement_{k}"] == 0.0 for k in DEFAULT_FEATURE_SPEC.engagement_kinds)


def test_values() -> None:
    x = build_features(CustomerFeaturesInput(30, 4, Decimal("100.00"), {"page_view": 9.0}))
    assert x["log_recency_days"] == pytest.approx(math.log1p(30))
    assert x["log_frequency"] == pytest.approx(math.log1p(4))
    assert x["slog_monetary"] == pytest.approx(math.log1p(100))
    assert x["slog_avg_order_value"] == pytest.approx(math.log1p(25))
    assert x["log_engagement_page_view"] == pytest.approx(math.log1p(9))


def test_never_purchased_customer_counts_as_lapsed_at_the_cap() -> None:
    spec = FeatureSpec(recency_cap_days=365)
    never = build_features(CustomerFeaturesInput(None, 0, Decimal(0)), spec)
    old = build_features(CustomerFeaturesInput(900, 0, Decimal(0)), spec)
    recent = build_features(CustomerFeaturesInput(10, 1, Decimal(5)), spec)
    assert never["log_recency_days"] == old["log_recency_days"] == pytest.approx(math.log1p(365))
    assert recent["log_recency_days"] < never["log_recency_days"]
    assert never["slog_avg_order_value"] == 0.0


def test_refunds_make_monetary_and_order_value_negative_not_nan() -> None:
    x = build_features(CustomerFeaturesInput(5, 2, Decimal("-40")))
    assert x["slog_monetary"] == pytest.approx(-math.log1p(40))
    assert x["slog_avg_order_value"] == pytest.approx(-math.log1p(20))
    assert build_features(CustomerFeaturesInput(5, 0, Decimal("-40")))["slog_avg_order_value"] == 0


def test_bad_engagement_scores_and_unknown_kinds_are_harmless() -> None:
    x = build_features(
        CustomerFeaturesInput(1, 1, Decimal(1), {"page_view": -3.0, "email_open": math.nan, "x": 5})
    )
    assert x["log_engagement_page_view"] == 0.0
    assert x["log_engagement_email_open"] == 0.0
    assert "log_engagement_x" not in x
    assert all(math.isfinite(v) for v in x.values())


def test_spec_validation() -> None:
    with pytest.raises(ValueError):
        FeatureSpec(engagement_kinds=("a", "a"))
    with pytest.raises(ValueError):
        FeatureSpec(recency_cap_days=-1)


def test_original_units_round_trip() -> None:
    x = build_features(CustomerFeaturesInput(12, 3, Decimal("-45.5"), {"email_open": 2}))
    back = to_original_units(x)
    assert back["recency_days"] == pytest.approx(12)
    assert back["frequency"] == pytest.approx(3)
    assert back["monetary"] == pytest.approx(-45.5)
    assert back["avg_order_value"] == pytest.approx(-45.5 / 3)
    assert back["engagement_email_open"] == pytest.approx(2)
    assert signed_log1p(0.0) == 0.0
