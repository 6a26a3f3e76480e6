"""Input readers for the embedded replay and the backfill: CDNOW, CSV, JSONL and Parquet,
each optionally gzip-compressed (recognised by its first bytes, whatever its name).

Every reader yields ``Parsed`` items in file order: either a valid event or a reject
carrying its line number, the error and the raw line. Bad lines never stop a replay:
whatever a line holds (bytes that are not UTF-8, JSON nested a thousand deep, a CSV field
past the csv module's limit, a currency the config cannot convert), it becomes a reject.
Only a file that cannot be read at all is an error: ``OSError``, for the caller to report.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Container, Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import BinaryIO, Literal, cast

from pydantic import ValidationError

from scoring.config import ScoringConfig, UnknownCurrencyError
from scoring.events import EngagementEvent, InputEvent, PurchaseEvent
from tierstream.input_rows import GZIP_MAGIC, Numbered, error_text, event_from_fields

# The readers' callers take the row types from here, with the readers that yield them.
from tierstream.input_rows import Parsed as Parsed
from tierstream.input_rows import Reject as Reject

Format = Literal["cdnow", "csv", "jsonl", "parquet"]
FORMATS: tuple[Format, ...] = ("cdnow", "csv", "jsonl", "parquet")
# Guards against a runaway line (e.g. a binary file) eating memory.
MAX_LINE_BYTES = 1 << 20
# JSON nested deeper than this (the event object is level 1) is a reject: the worker's
# parser (pydantic-core) dead-letters it, so replay and produce refuse the same lines.
# json.loads alone would take ~1,000 levels and then raise RecursionError, not ValueError.
MAX_NESTING = 200


# What surrogateescape makes of a byte that is not UTF-8.
_SURROGATE = re.compile("[\udc80-\udcff]")


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


def read_events(
    path: Path, fmt: Format, *, currencies: Container[str] | None = None
) -> Iterator[Parsed]:
    """The events and rejects of ``path``, in file order.

    ``currencies``: the currencies the scoring config can convert (``convertible``); a
    purchase in any other is a reject here, with its line number, rather than an
    ``UnknownCurrencyError`` out of the scorer in the middle of a replay. None: no check.
    Raises ``OSError`` at once (not at the first ``next``) when ``path`` cannot be read.
    """
    if fmt == "parquet":
        from tierstream.readers_parquet import read_parquet  # noqa: PLC0415 - pyarrow

        return _checked(read_parquet(path), currencies)
    reader = {"cdnow": _read_cdnow, "csv": _read_csv, "jsonl": _read_jsonl}[fmt]
    # Open now, so a directory or an unreadable file fails where the caller can say so.
    return _checked(reader(open_binary(path)), currencies)


def open_binary(path: Path) -> BinaryIO:
    """``path`` for reading, decompressed on the fly when it is gzip (by its magic bytes)."""
    handle = path.open("rb")
    if handle.peek(2)[:2] == GZIP_MAGIC:
        return cast(BinaryIO, gzip.GzipFile(fileobj=handle, mode="rb"))
    return handle


def detect_format(path: str) -> Format | None:
    """The format a file name says (``.gz`` aside), or None."""
    name = path.lower().removesuffix(".gz").removesuffix(".gzip")
    if name in ("cdnow", "-") or name.endswith("cdnow_master.txt"):
        return "cdnow"
    for suffix, fmt in (
        (".csv", "csv"),
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".json", "jsonl"),
        (".parquet", "parquet"),
        (".pq", "parquet"),
        (".cdnow", "cdnow"),
    ):
        if name.endswith(suffix):
            return cast(Format, fmt)
    return None


def convertible(config: ScoringConfig) -> frozenset[str]:
    """The currencies ``config`` converts to its base currency."""
    return frozenset({config.base_currency, *config.fx_rates})


def _checked(items: Iterator[Numbered], currencies: Container[str] | None) -> Iterator[Parsed]:
    for number, raw, item in items:
        if (
            currencies is not None
            and isinstance(item, PurchaseEvent)
            and item.currency not in currencies
        ):
            yield Reject(number, str(UnknownCurrencyError(item.currency)), raw[:2000])
            continue
        yield item


def _lines(handle: BinaryIO) -> Iterator[tuple[int, str | Reject]]:
    with handle:
        # readline with a limit, not iteration: iterating reads a whole line before its
        # length can be checked, so a file with no newline (a binary, a dump) was loaded
        # into memory entire. Past the limit the rest of the line is skipped in pieces.
        number = 0
        while raw := handle.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(raw) > MAX_LINE_BYTES:
                while not raw.endswith(b"\n") and (raw := handle.readline(MAX_LINE_BYTES)):
                    pass
                yield number, Reject(number, f"line longer than {MAX_LINE_BYTES} bytes", "")
                continue
            try:
                yield number, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                yield number, Reject(number, f"not UTF-8: {exc}", raw.decode("latin-1")[:200])


def _read_cdnow(handle: BinaryIO) -> Iterator[Numbered]:
    """CDNOW_master.txt: customer id, YYYYMMDD, number of CDs, dollar value per line."""
    for number, line in _lines(handle):
        if isinstance(line, Reject):
            yield number, line.raw, line
            continue
        fields = line.split()
        if not fields or (number == 1 and fields[0] == "customer_id"):
            continue  # blank line, or the column header the bundled file starts with
        try:
            if len(fields) != 4:
                raise ValueError(f"expected 4 fields, got {len(fields)}")
            customer_id, yyyymmdd, quantity, dollars = fields
            occurred = datetime.strptime(yyyymmdd, "%Y%m%d").replace(tzinfo=UTC)
            yield (
                number,
                line,
                PurchaseEvent(
                    event_id=f"cdnow:{number}",
                    customer_id=customer_id,
                    occurred_at=occurred,
                    amount=Decimal(dollars),
                    currency="USD",
                    attributes={"quantity": int(quantity)},
                ),
            )
        except (ValueError, InvalidOperation, ValidationError) as exc:
            yield number, line, Reject(number, error_text(exc), line)


def _read_csv(handle: BinaryIO) -> Iterator[Numbered]:
    """CSV with a header: event_id, customer_id, occurred_at, then amount, currency[, kind,
    order_id] for purchases and refunds, or kind[, weight] for engagements (a row with an
    empty amount is an engagement); purchases and engagements may share one file."""
    # utf-8-sig: a byte-order mark (Excel writes one) is not part of the first column's
    # name. surrogateescape, not "replace": bytes that are not UTF-8 stay distinct (two ids
    # differing only there must not merge into one customer) and are rejected per row below.
    with io.TextIOWrapper(
        handle, encoding="utf-8-sig", errors="surrogateescape", newline=""
    ) as text:
        rows = csv.DictReader(text)
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error as exc:
                # e.g. a field over csv.field_size_limit() (128 KiB): no event has one. The
                # reader resumes at the next line; the limit itself is process-wide, so it
                # stays as it is.
                # DictReader.line_num is only updated by a row that parsed; its reader's is
                # the line the error stopped at.
                number = rows.reader.line_num
                yield number, "", Reject(number, f"unreadable CSV: {exc}", "")
                continue
            number = rows.line_num
            raw = ",".join(str(v) for v in row.values())
            if _SURROGATE.search(raw):
                # Shown as latin-1, as the line readers do: printable and reversible.
                shown = raw.encode("utf-8", "surrogateescape").decode("latin-1")[:200]
                yield number, shown, Reject(number, "not UTF-8", shown)
                continue
            try:
                fields = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
                yield number, raw, event_from_fields(fields)
            except ValidationError as exc:
                yield number, raw, Reject(number, error_text(exc), raw[:2000])


def _read_jsonl(handle: BinaryIO) -> Iterator[Numbered]:
    """One SPEC input event per line: a purchase/refund (has "amount") or an engagement."""
    for number, line in _lines(handle):
        if isinstance(line, Reject):
            yield number, line.raw, line
            continue
        if not line.strip():
            continue
        try:
            yield number, line, parse_event_json(line)
        except (ValueError, ValidationError) as exc:
            yield number, line, Reject(number, error_text(exc), line[:2000])


def parse_event_json(text: str | bytes) -> InputEvent:
    """Parse one JSON input event; raises ValueError or ValidationError when it is not one."""
    try:
        data = json.loads(text, parse_float=Decimal)
    except RecursionError:
        # The C decoder's own guard: not a ValueError, so it escaped every reject handler.
        raise ValueError(f"JSON nested deeper than {MAX_NESTING} levels") from None
    if not isinstance(data, dict):
        raise ValueError("an event must be a JSON object")
    # Counting brackets is nearly free and bounds the depth: the walk (a third of the
    # parse's cost) only runs for the rare line that has more than MAX_NESTING of them.
    brackets = (
        text.count(b"[") + text.count(b"{")
        if isinstance(text, bytes)
        else text.count("[") + text.count("{")
    )
    if brackets > MAX_NESTING and _depth(data, MAX_NESTING) > MAX_NESTING:
        raise ValueError(f"JSON nested deeper than {MAX_NESTING} levels")
    if "amount" in data:
        return PurchaseEvent.model_validate(data)
    return EngagementEvent.model_validate(data)


def _depth(value: object, limit: int) -> int:
    """Nesting depth of a JSON value, counted no further than ``limit + 1``."""
    if limit < 0 or not isinstance(value, dict | list):
        return 0
    children = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(child, limit - 1) for child in children), default=0)
