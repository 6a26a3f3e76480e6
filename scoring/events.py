"""Event contracts: what arrives on the input topics and what tierstream publishes.

These pydantic models are the single source of the JSON Schemas in ``schemas/``.
Input models are strict about what could silently corrupt state (naive timestamps,
non-finite or negative money, empty ids) and lenient about what cannot (unknown extra
attributes are ignored).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

# Ids are opaque strings; the bounds keep one bad producer from bloating state.
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")
]
# Money arrives as a JSON decimal string or number and is held exactly as Decimal.
Money = Annotated[
    Decimal, Field(ge=Decimal(0), le=Decimal("1e12"), allow_inf_nan=False, decimal_places=6)
]
# Event dates are bounded well inside the calendar: the core's day arithmetic reaches a
# window and recency cuts beyond an event's day, so a date near year 1 or 9999 would
# overflow there instead of being rejected here. No customer event is older or newer.
EARLIEST_EVENT = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_EVENT = datetime(3000, 1, 1, tzinfo=UTC)
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
EngagementKind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]

Cause = Literal[
    "purchase",
    "refund",
    "engagement",
    "profile",  # a trait update from the profiles topic (scoring/profiles.py)
    "inactivity",
    "threshold_update",
    "model_update",
    "config_update",
    "erasure",
]


class _Input(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=False)

    event_id: Identifier
    customer_id: Identifier
    # Checked inside pydantic-core (a Python validator costs more than the parse itself).
    occurred_at: Annotated[AwareDatetime, Field(ge=EARLIEST_EVENT, lt=LATEST_EVENT)]
    # The B2B account (company) the customer acts for; None: no account. A customer's
    # account is the one named on its latest event (scoring/accounts.py).
    account_id: Identifier | None = None


class PurchaseEvent(_Input):
    """A purchase or a refund. Refund amounts are positive and subtract from monetary."""

    amount: Money
    currency: CurrencyCode
    order_id: Identifier | None = None
    kind: Literal["purchase", "refund"] = "purchase"
    attributes: dict[str, Any] = Field(default_factory=dict)


class EngagementEvent(_Input):
    """A non-purchase interaction; its weight adds to the customer's score for ``kind``."""

    kind: EngagementKind
    weight: Annotated[Decimal, Field(ge=Decimal(0), le=Decimal(1_000_000), allow_inf_nan=False)] = (
        Decimal(1)
    )


InputEvent = PurchaseEvent | EngagementEvent


class RfmValues(BaseModel):
    """The RFM figures behind a decision, as published on tier changes."""

    model_config = ConfigDict(frozen=True)

    recency_days: int | None
    frequency: int
    monetary: Decimal
    r: int | None
    f: int | None
    m: int | None


class TierChange(BaseModel):
    """Published on the tier-changes topic every time a customer's tier or segment changes."""

    model_config = ConfigDict(frozen=True)

    event_id: str = Field(description="Deterministic: the same change always has the same id")
    customer_id: str
    version: int = Field(ge=1, description="Increases by exactly 1 per change of this customer")
    previous_tier: str | None
    new_tier: str | None
    previous_segment: str | None
    new_segment: str | None
    cause: Cause
    reason: str
    rfm: RfmValues
    occurred_at: datetime
    emitted_at: datetime | None = None
    previous_behaviour: str | None = Field(
        default=None, description="Behaviour segment before (null: no behaviour model in use)"
    )
    new_behaviour: str | None = Field(
        default=None, description="Behaviour segment after (null: no behaviour model in use)"
    )


class DeadLetter(BaseModel):
    """Published on the dead-letters topic for every input message that could not be used."""

    model_config = ConfigDict(frozen=True)

    source_topic: str
    source_partition: int
    source_offset: int
    key_base64: str | None
    payload_base64: str
    error_kind: str
    error: str
    received_at: datetime
