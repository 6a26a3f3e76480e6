"""What every input reader shares (CSV, JSON lines, CDNOW, Parquet, profiles): the row
that is rejected, the event built from a row's fields, and a parse error as one line."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from scoring.events import EngagementEvent, InputEvent, PurchaseEvent

GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class Reject:
    line: int
    error: str
    raw: str


Parsed = InputEvent | Reject
# One input row: its line (or row) number from 1, the raw text, and what it parsed to.
Numbered = tuple[int, str, Parsed]


def event_from_fields(fields: dict[str, object]) -> InputEvent:
    """A purchase or refund when the row has an amount, else an engagement (as in JSON)."""
    if "amount" in fields:
        return PurchaseEvent.model_validate(fields)
    return EngagementEvent.model_validate(fields)


def error_text(exc: Exception) -> str:
    """A parse error on one line: each field's problem for a ValidationError, else the text."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'event'}: {err['msg']}"
            for err in exc.errors()
        )
    return str(exc)
