"""Input readers for the embedded replay: CDNOW, CSV and JSONL.

Every reader yields ``Parsed`` items in file order: either a valid event or a reject
carrying its line number, the error and the raw line. Bad lines never stop a replay.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from scoring.events import EngagementEvent, InputEvent, PurchaseEvent

Format = Literal["cdnow", "csv", "jsonl"]
# Guards against a runaway line (e.g. a binary file) eating memory.
MAX_LINE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Reject:
    line: int
    error: str
    raw: str


Parsed = InputEvent | Reject


def bundled_cdnow_path() -> Path:
    """CDNOW_master.txt as shipped inside the installed ``lifetimes`` package."""
    import lifetimes  # noqa: PLC0415 - heavy import, only needed for this dataset

    path = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_master.txt"
    if not path.exists():
        raise FileNotFoundError(f"CDNOW_master.txt not found in the lifetimes package at {path}")
    return path


def resolve_path(path: str, fmt: Format) -> Path:
    if fmt == "cdnow" and path in ("cdnow", "-"):
        return bundled_cdnow_path()
    return Path(path)


def read_events(path: Path, fmt: Format) -> Iterator[Parsed]:
    reader = {"cdnow": _read_cdnow, "csv": _read_csv, "jsonl": _read_jsonl}[fmt]
    return reader(path)


def _lines(path: Path) -> Iterator[tuple[int, str | Reject]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if len(raw) > MAX_LINE_BYTES:
                yield number, Reject(number, f"line longer than {MAX_LINE_BYTES} bytes", "")
                continue
            try:
                yield number, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                yield number, Reject(number, f"not UTF-8: {exc}", raw.decode("latin-1")[:200])


def _read_cdnow(path: Path) -> Iterator[Parsed]:
    """CDNOW_master.txt: customer id, YYYYMMDD, number of CDs, dollar value per line."""
    for number, line in _lines(path):
        if isinstance(line, Reject):
            yield line
            continue
        fields = line.split()
        if not fields or (number == 1 and fields[0] == "customer_id"):
            continue  # blank line, or the column header the bundled file starts with
        try:
            if len(fields) != 4:
                raise ValueError(f"expected 4 fields, got {len(fields)}")
            customer_id, yyyymmdd, quantity, dollars = fields
            occurred = datetime.strptime(yyyymmdd, "%Y%m%d").replace(tzinfo=UTC)
            yield PurchaseEvent(
                event_id=f"cdnow:{number}",
                customer_id=customer_id,
                occurred_at=occurred,
                amount=Decimal(dollars),
                currency="USD",
                attributes={"quantity": int(quantity)},
            )
        except (ValueError, InvalidOperation, ValidationError) as exc:
            yield Reject(number, _error_text(exc), line)


def _read_csv(path: Path) -> Iterator[Parsed]:
    """CSV with a header: event_id, customer_id, occurred_at, amount, currency[, kind, order_id]."""
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        rows = csv.DictReader(handle)
        for row in rows:
            number = rows.line_num
            try:
                fields = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
                yield PurchaseEvent.model_validate(fields)
            except ValidationError as exc:
                yield Reject(number, _error_text(exc), ",".join(str(v) for v in row.values()))


def _read_jsonl(path: Path) -> Iterator[Parsed]:
    """One SPEC input event per line: a purchase/refund (has "amount") or an engagement."""
    for number, line in _lines(path):
        if isinstance(line, Reject):
            yield line
            continue
        if not line.strip():
            continue
        try:
            yield parse_event_json(line)
        except (ValueError, ValidationError) as exc:
            yield Reject(number, _error_text(exc), line[:2000])


def parse_event_json(text: str | bytes) -> InputEvent:
    """Parse one JSON input event; raises ValueError or ValidationError when it is not one."""
    data = json.loads(text, parse_float=Decimal)
    if not isinstance(data, dict):
        raise ValueError("an event must be a JSON object")
    if "amount" in data:
        return PurchaseEvent.model_validate(data)
    return EngagementEvent.model_validate(data)


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'event'}: {err['msg']}"
            for err in exc.errors()
        )
    return str(exc)
