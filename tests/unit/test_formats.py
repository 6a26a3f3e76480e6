"""Every input format (and its gzip) reads the same events; the format comes from the name."""

from __future__ import annotations

import csv
import gzip
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scoring.events import EngagementEvent, PurchaseEvent
from streams.producer import event_json
from tierstream.readers import Reject, detect_format, read_events

T = datetime(2026, 1, 5, 10, 30, tzinfo=UTC)
EVENTS = [
    PurchaseEvent(
        event_id="p1", customer_id="c1", occurred_at=T, amount=Decimal("19.99"), currency="USD"
    ),
    EngagementEvent(event_id="g1", customer_id="c1", occurred_at=T, kind="page_view"),
    PurchaseEvent(
        event_id="r1",
        customer_id="c2",
        occurred_at=T,
        amount=Decimal("5.00"),
        currency="EUR",
        kind="refund",
        order_id="o1",
    ),
    EngagementEvent(
        event_id="g2", customer_id="c2", occurred_at=T, kind="email_open", weight=Decimal("2.5")
    ),
]
COLUMNS = [
    "event_id",
    "customer_id",
    "occurred_at",
    "amount",
    "currency",
    "kind",
    "order_id",
    "weight",
]


def essence(event) -> tuple:
    if isinstance(event, PurchaseEvent):
        return (
            "p",
            event.event_id,
            event.customer_id,
            event.occurred_at,
            event.amount,
            event.currency,
            event.kind,
            event.order_id,
        )
    return ("e", event.event_id, event.customer_id, event.occurred_at, event.kind, event.weight)


def rows() -> list[dict]:
    return [json.loads(event_json(e)) for e in EVENTS]


def write_jsonl(path: Path) -> None:
    path.write_bytes(b"".join(event_json(e) + b"\n" for e in EVENTS))


def write_csv(path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(rows())


def write_parquet(path: Path) -> None:
    table = {name: [row.get(name) for row in rows()] for name in COLUMNS}
    table["occurred_at"] = [e.occurred_at for e in EVENTS]
    table["amount"] = [str(e.amount) if isinstance(e, PurchaseEvent) else None for e in EVENTS]
    schema = pa.schema(
        [
            ("occurred_at", pa.timestamp("us", tz="UTC"))
            if n == "occurred_at"
            else (n, pa.string())
            for n in COLUMNS
        ]
    )
    pq.write_table(pa.table(table, schema=schema), path)


WRITERS = {"jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet}


def gzipped(path: Path) -> Path:
    target = path.with_name(path.name + ".gz")
    target.write_bytes(gzip.compress(path.read_bytes()))
    return target


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
@pytest.mark.parametrize("compressed", [False, True])
def test_each_format_reads_the_same_events(tmp_path, fmt, compressed):
    path = tmp_path / f"history.{fmt}"
    WRITERS[fmt](path)
    if compressed:
        path = gzipped(path)
    assert detect_format(str(path)) == fmt
    got = list(read_events(path, fmt))
    assert [essence(e) for e in got] == [essence(e) for e in EVENTS]


@pytest.mark.parametrize("compressed", [False, True])
def test_cdnow_format_and_its_gzip(tmp_path, compressed):
    path = tmp_path / "CDNOW_master.txt"
    path.write_text("00001 19970101 1 11.77\n00002 19970112 2 89.00\n", encoding="utf-8")
    if compressed:
        path = gzipped(path)
    assert detect_format(str(path)) == "cdnow"
    got = list(read_events(path, "cdnow"))
    assert [(e.customer_id, e.amount) for e in got] == [
        ("00001", Decimal("11.77")),
        ("00002", Decimal("89.00")),
    ]


def test_names_without_a_known_suffix_are_not_guessed():
    assert detect_format("history.txt") is None and detect_format("events") is None
    assert detect_format("x.ndjson.gz") == "jsonl" and detect_format("x.pq") == "parquet"


def test_a_bad_parquet_row_is_a_reject_and_a_non_parquet_file_one_reject(tmp_path):
    path = tmp_path / "bad.parquet"
    table = pa.table(
        {
            "event_id": ["a", "b"],
            "customer_id": ["c", "c"],
            "occurred_at": ["2026-01-01T00:00:00+00:00", "yesterday"],
            "amount": ["1.00", "2.00"],
            "currency": ["USD", "USD"],
        }
    )
    pq.write_table(table, path)
    got = list(read_events(path, "parquet"))
    assert isinstance(got[0], PurchaseEvent) and isinstance(got[1], Reject) and got[1].line == 2
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    [reject] = list(read_events(junk, "parquet"))
    assert isinstance(reject, Reject) and "Parquet" in reject.error
