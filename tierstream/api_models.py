"""The API's response bodies as pydantic models: the one description of what each route sends.

The handlers build their bodies as plain dicts (the scorer, the KPI table and the stores
already speak JSON-ready dicts, and re-validating every answer would cost time on the hot
lookup path); these models are what the OpenAPI document's schemas are generated from
(tierstream/openapi.py), and the integration tests validate real answers against them.
Fields marked optional (``= None``) may be absent from a body; ``X | None`` with no default
means present and possibly null.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from scoring.events import Cause
from scoring.reactions import ServiceLevel
from tierstream.erasure import ErasureRequest

Score = Annotated[int, Field(ge=1, le=5)]
Count = Annotated[int, Field(ge=0)]
Kind = Literal["tier", "segment", "behaviour"]


class Body(BaseModel):
    # Fields not described here are not an error (as the document has always said).
    model_config = ConfigDict(populate_by_name=True)


class Error(Body):
    """Every error: a short message, and the offending input where there is one."""

    error: str
    detail: str | None = None
    customer_id: str | None = None


class HistoryEntry(Body):
    """One recent tier change (the fields of the tier-changes event, without reason and rfm)"""

    event_id: str = Field(description="as on the tier-changes topic")
    version: int = Field(ge=1)
    occurred_at: datetime
    cause: Cause
    previous_tier: str | None
    new_tier: str | None
    previous_segment: str | None
    new_segment: str | None


class Behaviour(Body):
    """behaviour segment under the published model, if any"""

    behaviour_id: int
    segment_id: int = Field(description="deprecated: the same id as behaviour_id")
    label: str
    model_version: int


class StateRecord(Body):
    """The state record's fields shared by a customer and a B2B account (docs/contracts.md)"""

    frequency: int = Field(description="purchases in the window")
    monetary: str = Field(description="net amount in the window (decimal, base currency)")
    recency_days: int | None
    last_purchase_at: datetime | None
    first_purchase_at: datetime | None
    r: Score | None
    f: Score | None
    m: Score | None
    tier: str | None
    segment: str | None
    engagement: dict[str, str] = Field(
        description="engagement kind -> summed weight in the window (decimal)"
    )
    version: int = Field(ge=0)
    as_of: date


class Customer(StateRecord):
    """The SPEC state record as of `as_of`, why, and recent tier changes"""

    customer_id: str
    e: Score | None = Field(description="engagement score")
    traits: dict[str, str | bool] | None = Field(
        default=None,
        description="the customer's traits from the customer-profiles topic, when any "
        "(numbers as decimal strings); docs/custom-criteria.md",
    )
    why: str = Field(description="the tier and segment rules that apply")
    pending_changes: Count = Field(
        description="changes due by as_of that the worker has not committed yet"
    )
    history: list[HistoryEntry]
    p_alive: float | None = Field(
        default=None,
        description="BG/NBD probability the customer is still active (null: no lifetime "
        "value model published, or no purchase); docs/clv.md",
    )
    clv_12m: float | None = Field(
        default=None,
        description="expected net value of the next 365 days (BG/NBD x Gamma-Gamma)",
    )
    clv_model_version: int | None = None
    behaviour: Behaviour | None = None


class KpiRow(Body):
    """KPIs of one group (docs/kpis.md defines each)"""

    group: str
    customers: Count
    customer_share: float
    revenue: str = Field(description="net revenue of the KPI window")
    revenue_share: float | None
    top20_revenue_share: float | None
    average_order_value: str | None
    purchases_per_customer: float
    previous_buyers: Count
    retained: Count
    retention: float | None
    churn_rate: float | None
    mean_p_alive: float | None
    mean_clv_12m: float | None


class Kpis(Body):
    """One row per group, and the row of all placed customers"""

    by: Kind
    as_of: date
    period_days: int = Field(ge=1)
    customers: int
    unplaced: int
    skipped: int | None = None
    behaviour_model_version: int | None = None
    segment_model_version: int | None = Field(
        default=None, description="deprecated: the same as behaviour_model_version"
    )
    clv_model_version: int | None = None
    groups: list[KpiRow]
    all: KpiRow
    computed_at: str | None = None


class SizeRow(Body):
    name: str
    customers: int


class Sizes(Body):
    """Customers per tier (GET /tiers) or per segment (GET /segments)"""

    customers: int
    computed_at: datetime
    age_seconds: float
    max_age_seconds: float
    scan_seconds: float
    method: Literal["scan", "counts"] = Field(
        description="scan: counted from every state; counts: the running sizes the commit "
        "keeps (a store marked by tierstream audience --rebuild)"
    )
    unplaced: int = Field(description="customers with no tier/segment")
    tiers: list[SizeRow] | None = None
    segments: list[SizeRow] | None = None


class Flow(Body):
    from_: str | None = Field(alias="from")
    to: str | None
    changes: int


class Totals(Body):
    changes: int
    dead_letters: int
    events: int


class Flows(Body):
    """Running totals of every worker since the first commit"""

    tiers: list[str]
    segments: list[str]
    tier_flows: list[Flow]
    segment_flows: list[Flow]
    behaviour_flows: list[Flow] | None = Field(
        default=None, description="moves between behaviour segments (labels)"
    )
    changes_by_cause: dict[str, int]
    dead_letters_by_kind: dict[str, int]
    events: dict[str, int] = Field(description="applied, duplicate, outside_window, rescored")
    totals: Totals
    read_at: datetime


class LearnedBehaviour(Body):
    segment_id: int = Field(description="the behaviour id (the snapshot format's field name)")
    label: str
    centroid: list[float]
    share: float
    spread: float | None = None


class BehaviourModel(Body):
    """A published behaviour model, the snapshot as stored (format tierstream.segments/1)"""

    format: str
    version: int
    created_at: datetime
    n_seen: int | None = None
    feature_names: list[str]
    mean: list[float]
    scale: list[float]
    segments: list[LearnedBehaviour]


class Model(Body):
    model: BehaviourModel | None = Field(description="the snapshot, or null")


class Check(Body):
    ok: bool
    detail: str
    seconds: float | None = None
    age_seconds: float | None = Field(default=None, description="Kafka answers are reused ~2 s")


class Health(Body):
    status: Literal["ok", "unavailable", "stopped"] = Field(
        description="stopped: the worker serving this stopped a shard and is about to exit"
    )
    redis: Check
    kafka: Check
    stopped_shards: dict[str, str] | None = Field(
        default=None, description="shard -> why it stopped (only when status is stopped)"
    )


class CustomerTier(Body):
    customer_id: str
    tier: str | None
    is_vip: bool = Field(description="in the highest tier of the plan")
    service_level: ServiceLevel | None = Field(
        description="how support serves the tier (the scoring config's service_levels)"
    )
    segment: str | None
    behaviour: str | None = Field(
        description="the behaviour segment's label, when a model is published"
    )
    why: str


class LookupRequest(BaseModel):
    ids: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        min_length=1, max_length=1000
    )


class FoundCustomer(CustomerTier):
    found: Literal[True]


class UnknownCustomer(Body):
    customer_id: str
    found: Literal[False]
    error: Literal["unknown customer"]


class LookupResult(RootModel[FoundCustomer | UnknownCustomer]):
    pass


class LookupResults(Body):
    results: list[LookupResult] = Field(description="one per requested id, in order")


class Members(Body):
    """One page of an audience's members, in the byte order of their UTF-8 ids"""

    kind: Kind
    name: str
    size: Count = Field(description="customers in the audience now (kept by every commit)")
    members: list[str]
    next_cursor: str | None = Field(
        description="pass as cursor for the next page; null: this is the last"
    )


class AccountMember(Body):
    customer_id: str
    tier: str | None
    segment: str | None


class Account(StateRecord):
    """A B2B account's record (docs/contracts.md, account record), summed over its current
    contacts, with them and its recent changes"""

    account_id: str
    contacts: Count
    members: list[AccountMember] = Field(
        description="the current contacts, by id, with their own tier and segment"
    )
    history: list[HistoryEntry]


class ErasureAccepted(ErasureRequest):
    """The erasure request as sent to the erasures topic, and where it landed"""

    topic: str
    partition: int
    offset: int
    status: Literal["accepted"]


class CustomerExport(Body):
    """Everything held about the customer (right of access; docs/operations.md)"""

    customer_id: str
    exported_at: datetime
    state: dict[str, Any] = Field(
        description="the state in readable form: purchase and engagement days, remembered "
        "event-id digests, first and last purchase, scores, tier, segments, traits, version"
    )
    placement: dict[str, Any] | None = Field(description="the state record, as GET /customers")
    history: list[HistoryEntry] = Field(description="every change kept, newest first")
    next_rescore_at: datetime | None
    stored: dict[str, Any] = Field(description="the stored record as held")


# Every body a route sends, in the order the document lists them.
RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    Error,
    Customer,
    Kpis,
    Sizes,
    Flows,
    Model,
    Health,
    CustomerTier,
    LookupRequest,
    LookupResults,
    Members,
    Account,
    ErasureAccepted,
    CustomerExport,
)
