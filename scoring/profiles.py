"""Customer profile updates: the traits of one customer, as the profiles topic carries them.

The topic is compacted and keyed by customer id; a value replaces the customer's traits as
a whole, a null value (tombstone) deletes them. Updates are ordered by ``updated_at``: an
older one than what is held is ignored, and of two with the same ``updated_at`` the one
with the greater canonical form wins (``canonical``), so every delivery order ends in
the same traits and a redelivery changes nothing.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from scoring.criteria import TraitValue
from scoring.events import EARLIEST_EVENT, LATEST_EVENT, Identifier

MAX_TRAITS = 64
MAX_TRAIT_TEXT = 256
# Numbers beyond this are no trait anyone scores; the bound keeps Decimal arithmetic small.
MAX_TRAIT_NUMBER = Decimal("1e15")
_NAME = r"^[a-z][a-z0-9_]{0,63}$"


class ProfileUpdate(BaseModel):
    """A customer's traits as of ``updated_at``; ``traits`` None: delete them (tombstone)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    customer_id: Identifier
    traits: dict[Annotated[str, Field(pattern=_NAME)], TraitValue] | None
    updated_at: Annotated[AwareDatetime, Field(ge=EARLIEST_EVENT, lt=LATEST_EVENT)] | None = None

    @field_validator("traits", mode="before")
    @classmethod
    def _plain_values(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ValueError("traits must be an object of name: number, string or boolean")
        if len(value) > MAX_TRAITS:
            raise ValueError(f"{len(value)} traits, at most {MAX_TRAITS}")
        return {name: _trait_value(name, raw) for name, raw in value.items()}

    @property
    def occurred_at(self) -> datetime:
        """The moment the update is ordered by (a replay's event time)."""
        assert self.updated_at is not None, "a tombstone has no time"
        return self.updated_at


def _trait_value(name: object, raw: object) -> TraitValue:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        if len(raw) > MAX_TRAIT_TEXT:
            raise ValueError(f"trait {name}: text longer than {MAX_TRAIT_TEXT} characters")
        if any(ord(ch) < 0x20 for ch in raw):
            raise ValueError(f"trait {name}: text with control characters")
        return raw
    if isinstance(raw, int | float | Decimal):
        if isinstance(raw, float) and not math.isfinite(raw):
            raise ValueError(f"trait {name}: not a finite number")
        number = Decimal(str(raw)) if isinstance(raw, float) else Decimal(raw)
        if not number.is_finite() or abs(number) > MAX_TRAIT_NUMBER:
            raise ValueError(f"trait {name}: numbers must be finite and within ±1e15")
        return number
    raise ValueError(f"trait {name}: must be a number, a string or a boolean")


def canonical(traits: dict[str, TraitValue] | None) -> str:
    """A total order of trait sets, for the tie of two updates with the same ``updated_at``."""
    tagged = {k: [type(v).__name__, str(v)] for k, v in (traits or {}).items()}
    return json.dumps(tagged, sort_keys=True, ensure_ascii=True)
