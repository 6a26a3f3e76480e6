"""Behavioural feature vectors built from one customer's RFM snapshot.

The scoring core adapts its per-customer state to :class:`CustomerFeaturesInput`; this
module turns that into the flat ``{name: float}`` dict the clustering model learns from.
Every feature is log-compressed because RFM quantities are heavy-tailed (a handful of
customers spend 100x the median), and k-means on raw dollars would spend all of its
clusters on the tail.

Features, in this order:

``log_recency_days``
    ``log1p(min(recency_days, recency_cap_days))``. A customer with no purchase at all
    (``recency_days is None``, for instance one who only has engagement events) gets the
    cap, i.e. counts as lapsed as anyone can be. The cap (default 730 days, two default
    windows) also stops a few very old customers from stretching the axis.
``log_frequency``
    ``log1p(frequency)``, purchases in the window.
``slog_monetary``
    signed ``log1p``: ``sign(m) * log1p(|m|)``. Monetary is net of refunds and can be
    negative.
``slog_avg_order_value``
    signed ``log1p`` of ``monetary / frequency`` when ``frequency > 0``, else 0. Signed for
    the same reason as monetary.
``log_engagement_<kind>``
    ``log1p(max(score, 0))`` for each configured engagement kind, in the configured order;
    a kind the customer has no score for is 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

__all__ = [
    "DEFAULT_ENGAGEMENT_KINDS",
    "DEFAULT_FEATURE_SPEC",
    "CustomerFeaturesInput",
    "FeatureSpec",
    "build_features",
    "signed_log1p",
    "to_original_units",
]

DEFAULT_ENGAGEMENT_KINDS: tuple[str, ...] = (
    "page_view",
    "email_open",
    "email_click",
    "app_session",
    "support_ticket",
)

RECENCY = "log_recency_days"
FREQUENCY = "log_frequency"
MONETARY = "slog_monetary"
AVG_ORDER_VALUE = "slog_avg_order_value"
ENGAGEMENT_PREFIX = "log_engagement_"


@dataclass(frozen=True, slots=True)
class CustomerFeaturesInput:
    """What the model needs to know about one customer, as of one moment.

    Parameters
    ----------
    recency_days
        Whole UTC days since the last purchase, or ``None`` if the customer never bought.
    frequency
        Purchases in the rolling window.
    monetary
        Net amount in the rolling window, base currency; negative after large refunds.
    engagement
        Engagement score per kind (``page_view``, ``email_open``, ...).
    """

    recency_days: int | None
    frequency: int
    monetary: Decimal
    engagement: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """Which features to build.

    Parameters
    ----------
    engagement_kinds
        Engagement kinds that become features, in this order. Kinds not listed are ignored.
    recency_cap_days
        Recency is clipped here, and customers who never bought get this value.
    """

    engagement_kinds: tuple[str, ...] = DEFAULT_ENGAGEMENT_KINDS
    recency_cap_days: int = 730

    def __post_init__(self) -> None:
        if self.recency_cap_days < 0:
            raise ValueError("recency_cap_days must be >= 0")
        if len(set(self.engagement_kinds)) != len(self.engagement_kinds):
            raise ValueError("engagement_kinds must not repeat")

    @property
    def names(self) -> tuple[str, ...]:
        """Feature names in their fixed order."""
        return (RECENCY, FREQUENCY, MONETARY, AVG_ORDER_VALUE) + tuple(
            ENGAGEMENT_PREFIX + kind for kind in self.engagement_kinds
        )


DEFAULT_FEATURE_SPEC = FeatureSpec()


def signed_log1p(value: float) -> float:
    """``sign(value) * log1p(|value|)``: log compression that keeps the sign.

    >>> signed_log1p(-math.e + 1) == -signed_log1p(math.e - 1) == -1.0
    True
    """
    return math.copysign(math.log1p(abs(value)), value) if value else 0.0


def _signed_expm1(value: float) -> float:
    return math.copysign(math.expm1(abs(value)), value) if value else 0.0


def build_features(
    customer: CustomerFeaturesInput, spec: FeatureSpec = DEFAULT_FEATURE_SPEC
) -> dict[str, float]:
    """The feature dict of one customer, keys in :attr:`FeatureSpec.names` order.

    Examples
    --------
    >>> from decimal import Decimal
    >>> x = build_features(
    ...     CustomerFeaturesInput(
    ...         recency_days=9, frequency=3, monetary=Decimal("-29"), engagement={"email_open": 6}
    ...     ),
    ...     FeatureSpec(engagement_kinds=("email_open", "page_view")),
    ... )
    >>> {k: round(v, 3) for k, v in x.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'log_recency_days': 2.303, 'log_frequency': 1.386, 'slog_monetary': -3.401,
     'slog_avg_order_value': -2.367, 'log_engagement_email_open': 1.946,
     'log_engagement_page_view': 0.0}
    >>> build_features(CustomerFeaturesInput(None, 0, Decimal(0)))["log_recency_days"]
    ... # doctest: +ELLIPSIS
    6.594...
    """
    cap = spec.recency_cap_days
    recency = cap if customer.recency_days is None else min(max(customer.recency_days, 0), cap)
    frequency = max(customer.frequency, 0)
    monetary = float(customer.monetary)
    avg_order_value = monetary / frequency if frequency > 0 else 0.0

    features = {
        RECENCY: math.log1p(recency),
        FREQUENCY: math.log1p(frequency),
        MONETARY: signed_log1p(monetary),
        AVG_ORDER_VALUE: signed_log1p(avg_order_value),
    }
    for kind in spec.engagement_kinds:
        score = float(customer.engagement.get(kind, 0.0))
        # NaN or negative scores would poison the running mean of every worker.
        features[ENGAGEMENT_PREFIX + kind] = math.log1p(score) if score > 0 else 0.0
    return features


def to_original_units(features: Mapping[str, float]) -> dict[str, float]:
    """Undo the log compression: a feature vector (or centroid) in days, counts and money.

    Keys lose their ``log_``/``slog_`` prefix. Applied to a centroid this gives the
    geometric-mean-like "typical member", which is what a behaviour label should describe.

    >>> to_original_units({"log_recency_days": math.log1p(30), "slog_monetary": -1.0})
    ... # doctest: +ELLIPSIS
    {'recency_days': 30.0..., 'monetary': -1.718...}
    """
    out: dict[str, float] = {}
    for name, value in features.items():
        if name.startswith("slog_"):
            out[name.removeprefix("slog_")] = _signed_expm1(value)
        elif name.startswith("log_"):
            out[name.removeprefix("log_")] = math.expm1(value)
        else:
            out[name] = value
    return out
