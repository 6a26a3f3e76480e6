"""Parquet input (pyarrow), read in record batches: one row is one event, columns as in CSV.

Columns: event_id, customer_id, occurred_at (a timestamp with a time zone, or an ISO-8601
string with offset), then amount, currency[, kind, order_id] for purchases and refunds, or
kind[, weight] for engagements; a row whose amount is null is an engagement. Row numbers
(from 1) stand in for line numbers in rejects. A gzip-compressed file is decompressed to
a temporary file first (Parquet needs to seek).
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tierstream.input_rows import GZIP_MAGIC, Numbered, Reject, error_text, event_from_fields

ROWS_PER_BATCH = 10_000


def read_parquet(path: Path) -> Iterator[Numbered]:
    """The rows of a Parquet file as (row number, raw, event or reject)."""
    import pyarrow.parquet as pq  # noqa: PLC0415 - only Parquet input needs it

    with path.open("rb") as probe:  # OSError here, where the caller reports it
        compressed = probe.read(2) == GZIP_MAGIC
    try:
        if compressed:
            spool = tempfile.NamedTemporaryFile(suffix=".parquet")  # closed below
            with gzip.open(path, "rb") as source:
                shutil.copyfileobj(source, spool, 1 << 20)
            spool.flush()
            parquet = pq.ParquetFile(spool.name)
        else:
            spool = None
            parquet = pq.ParquetFile(path)
    except (OSError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise
        return _unreadable(f"not a Parquet file: {exc}")
    return _rows(parquet, spool)


def _unreadable(error: str) -> Iterator[Numbered]:
    yield 1, "", Reject(1, error, "")


def _rows(parquet: Any, spool: Any) -> Iterator[Numbered]:
    number = 0
    batches = parquet.iter_batches(batch_size=ROWS_PER_BATCH)
    try:
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (OSError, ValueError) as exc:  # a corrupt page: the rest is unreadable
                yield number + 1, "", Reject(number + 1, f"unreadable Parquet: {exc}", "")
                return
            for row in batch.to_pylist():
                number += 1
                fields = {k: _value(v) for k, v in row.items() if v is not None and v != ""}
                raw = str(fields)[:2000]
                try:
                    yield number, raw, event_from_fields(fields)
                except ValidationError as exc:
                    yield number, raw, Reject(number, error_text(exc), raw)
    finally:
        if spool is not None:
            spool.close()


def _value(value: object) -> object:
    # Money as an exact decimal: a float column is taken at its shortest repr ("19.99").
    if isinstance(value, float):
        return Decimal(repr(value))
    return value
