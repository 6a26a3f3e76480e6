"""What the scoring config says about reacting to tiers: service levels and subscriptions.

Pure configuration models (no I/O): ``service_levels`` tells support how to treat a
customer of each tier; ``subscriptions`` name the tier changes that ``tierstream deliver``
copies to a derived topic and/or pushes to a webhook. Names are checked against the
config's tiers and segments by ``ScoringConfig``; a webhook's secret variable is checked
when ``deliver`` starts (reading the environment is I/O).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from scoring.events import Cause

CAUSES: tuple[str, ...] = get_args(Cause)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServiceLevel(_Frozen):
    """How support serves a tier: how fast, through which channel, by whom."""

    response_time: str = Field(min_length=1)  # e.g. "same day", "within 48 hours"
    channel: str = Field(min_length=1)  # e.g. "named account manager", "web and phone"
    owner: str = Field(min_length=1)  # e.g. "account manager", "support team"


Names = Annotated[tuple[str, ...], Field(min_length=1)]


def _names(value: Any) -> Any:
    # `entered_tier: VIP` and `entered_tier: [VIP, A]` both mean a set of names.
    return (value,) if isinstance(value, str) else value


class When(_Frozen):
    """Conditions on a tier change, all of which must hold (none: every change).

    ``entered_X: N`` holds when the change's new X is N and its previous X is not;
    ``left_X: N`` when its previous X is N and its new X is not.
    """

    entered_tier: Names | None = None
    left_tier: Names | None = None
    entered_segment: Names | None = None
    left_segment: Names | None = None
    entered_behaviour: Names | None = None
    left_behaviour: Names | None = None
    cause: Names | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _as_names(cls, value: Any) -> Any:
        return _names(value)

    @field_validator("cause")
    @classmethod
    def _known_causes(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        unknown = [cause for cause in value or () if cause not in CAUSES]
        if unknown:
            raise ValueError(f"unknown cause {unknown[0]!r} (one of {', '.join(CAUSES)})")
        return value

    def matches(self, change: Mapping[str, Any]) -> bool:
        """Whether the tier change (its JSON value, as a dict) meets every condition."""
        for field, new, old in _TRANSITIONS:
            entered, left = getattr(self, f"entered_{field}"), getattr(self, f"left_{field}")
            now, before = change.get(new), change.get(old)
            if entered is not None and (now not in entered or before == now):
                return False
            if left is not None and (before not in left or before == now):
                return False
        return self.cause is None or change.get("cause") in self.cause


# (condition suffix, new field, previous field) of a tier change.
_TRANSITIONS = (
    ("tier", "new_tier", "previous_tier"),
    ("segment", "new_segment", "previous_segment"),
    ("behaviour", "new_behaviour", "previous_behaviour"),
)


class Webhook(_Frozen):
    """An HTTP endpoint the matching changes are POSTed to, signed with HMAC-SHA256."""

    url: str = Field(pattern=r"^https?://[^\s/?#]+[^\s]*$")
    # The environment variable holding the HMAC key (never the key itself in the file).
    secret_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    max_attempts: int = Field(default=8, ge=1, le=100)
    concurrency: int = Field(default=4, ge=1, le=256)  # requests in flight to this endpoint
    # Waits between attempts: jittered, doubling from retry_base_seconds up to the cap.
    retry_base_seconds: float = Field(default=0.5, gt=0, le=3600)
    retry_cap_seconds: float = Field(default=60.0, gt=0, le=3600)

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.lower().startswith(("http://", "https://")):
            raise ValueError(f"webhook url must start with http:// or https://, got {value!r}")
        return value


class Subscription(_Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    when: When = When()
    topic: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,249}$")
    webhook: Webhook | None = None

    @model_validator(mode="after")
    def _delivers_somewhere(self) -> Subscription:
        if self.topic is None and self.webhook is None:
            raise ValueError(f"subscription {self.name!r} needs a topic, a webhook or both")
        return self


def check_reactions(
    service_levels: Mapping[str, ServiceLevel],
    subscriptions: tuple[Subscription, ...],
    tiers: list[str],
    segments: list[str],
) -> None:
    """Names in service levels and subscriptions must be the config's tiers and segments
    (a typo would otherwise be a subscription that never fires)."""
    for tier in service_levels:
        if tier not in tiers:
            raise ValueError(f"service_levels: unknown tier {tier!r} (tiers: {', '.join(tiers)})")
    seen: set[str] = set()
    for subscription in subscriptions:
        where = f"subscription {subscription.name!r}"
        if subscription.name in seen:
            raise ValueError(f"{where} is defined twice")
        seen.add(subscription.name)
        when = subscription.when
        for kind, known, given in (
            ("tier", tiers, (when.entered_tier or ()) + (when.left_tier or ())),
            ("segment", segments, (when.entered_segment or ()) + (when.left_segment or ())),
        ):
            for name in given:
                if name not in known:
                    raise ValueError(
                        f"{where}: unknown {kind} {name!r} (one of {', '.join(known)})"
                    )
