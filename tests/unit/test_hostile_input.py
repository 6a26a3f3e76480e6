"""Hostile input never crashes a command (issue "No input crashes a command", part 3).

SPEC (README): malformed input lines are counted, reported with their line numbers,
written to ``--rejects-out`` when given, and skipped; the replay goes on (exit 0) unless
``--strict``. Anything else hostile gets one clear line and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tierstream import api
from tierstream.cli import app
from tierstream.readers import Reject, read_events

GOOD: dict[str, Any] = {
    "event_id": "e1",
    "customer_id": "c1",
    "occurred_at": "2025-01-02T10:00:00+00:00",
    "amount": "19.99",
    "currency": "USD",
}
HEADER = "event_id,customer_id,occurred_at,amount,currency\n"
ROW = "a,c1,2025-01-01T00:00:00Z,10.00,USD\n"
DEEP = "[" * 1000 + "]" * 1000


def jsonl(tmp_path: Path, *lines: str | dict[str, Any]) -> Path:
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def summary(result: Result) -> dict[str, Any]:
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_one_line_error(result: Result, *needles: str) -> None:
    """Exit 2, no traceback, and the whole complaint on one stderr line."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def replay(path: Path, *extra: str) -> Result:
    return invoke("replay", str(path), "--as-of", "2025-02-01", "--quiet", *extra)


# --- JSON nested 1,000 deep ----------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [DEEP, json.dumps(GOOD)[:-1] + ', "attributes": {"a": ' + DEEP + "}}"],
    ids=["bare", "in-attributes"],
)
def test_deeply_nested_json_is_a_reject(tmp_path: Path, line: str) -> None:
    items = list(read_events(jsonl(tmp_path, GOOD, line), "jsonl"))
    assert isinstance(items[1], Reject) and items[1].line == 2, items[1]
    assert "nested" in items[1].error


def test_attributes_nested_within_the_parser_limit_are_still_rejected(tmp_path: Path) -> None:
    # json.loads copes with 500 levels, but json.dumps on produce would not with much more.
    line = json.dumps({**GOOD, "attributes": {"a": json.loads("[" * 500 + "]" * 500)}})
    items = list(read_events(jsonl(tmp_path, line), "jsonl"))
    assert isinstance(items[0], Reject) and "nested" in items[0].error


def test_deeply_nested_json_replay_and_produce(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = jsonl(tmp_path, GOOD, DEEP)
    result = replay(source)
    assert result.exit_code == 0 and summary(result)["rejected"] == 1, result.output

    import streams.producer  # noqa: PLC0415

    sent: list[Any] = []
    monkeypatch.setattr(
        streams.producer, "produce", lambda _bootstrap, events, **_kw: sent.extend(events) or 1
    )
    produced = invoke("produce", str(source), "--format", "jsonl")
    assert produced.exit_code == 0, (produced.output, produced.exception)
    assert summary(produced)["rejected"] == 1 and len(sent) == 1


# --- CSV: byte-order mark, huge field, bytes that are not UTF-8 ----------------------------


def test_csv_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + ROW).encode())
    items = list(read_events(path, "csv"))
    assert [type(i).__name__ for i in items] == ["PurchaseEvent"], items


def test_csv_field_over_128_kib_is_a_reject(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    huge = "x" * (200 * 1024)
    path.write_text(HEADER + ROW + f'b,"{huge}",2025-01-01T00:00:00Z,1,USD\n' + ROW)
    items = list(read_events(path, "csv"))
    assert [type(i).__name__ for i in items] == ["PurchaseEvent", "Reject", "PurchaseEvent"]
    assert isinstance(items[1], Reject) and items[1].line == 3
    result = replay(path, "--format", "csv")
    assert result.exit_code == 0 and summary(result)["rejected"] == 1, result.output


def test_csv_bytes_that_are_not_utf8_are_rejected_not_merged(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes(
        HEADER.encode()
        + b"a,c\xff,2025-01-01T00:00:00Z,1,USD\n"
        + b"b,c\xfe,2025-01-01T00:00:00Z,1,USD\n"
        + ROW.encode()
    )
    items = list(read_events(path, "csv"))
    assert [type(i).__name__ for i in items] == ["Reject", "Reject", "PurchaseEvent"]
    assert [i.line for i in items if isinstance(i, Reject)] == [2, 3]
    assert all("UTF-8" in i.error for i in items if isinstance(i, Reject))
    rejects_out = tmp_path / "r.jsonl"
    result = replay(path, "--format", "csv", "--rejects-out", str(rejects_out))
    assert result.exit_code == 0 and summary(result)["rejected"] == 2, result.output
    assert len(rejects_out.read_text().splitlines()) == 2


# --- --as-of: malformed, or near the end of the calendar -----------------------------------

BAD_AS_OF = ["yesterday", "9999-12-31", "9999-12-31T23:59:59+00:00", "0001-01-01"]


@pytest.mark.parametrize("as_of", BAD_AS_OF)
def test_api_as_of_out_of_range_is_a_value_error(as_of: str) -> None:
    # The API answers 400 for ValueError (tests/integration/test_api.py covers the route).
    with pytest.raises(ValueError):
        api.parse_as_of(as_of)
