from __future__ import annotations

import json
from decimal import Decimal

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from scoring.events import PurchaseEvent
from tierstream.cli import app
from tierstream.readers import Reject, parse_event_json, read_events

GOOD = {
    "event_id": "e1",
    "customer_id": "c1",
    "occurred_at": "2025-01-02T10:00:00+01:00",
    "amount": "19.99",
    "currency": "USD",
}


def test_purchase_contract_keeps_money_exact():
    event = parse_event_json(json.dumps({**GOOD, "amount": 0.1}))
    assert isinstance(event, PurchaseEvent) and event.amount == Decimal("0.1")


@pytest.mark.parametrize(
    "patch",
    [
        {"occurred_at": "2025-01-02T10:00:00"},  # naive
        {"amount": "NaN"},
        {"amount": "-5"},
        {"amount": "abc"},
        {"customer_id": ""},
        {"currency": "usd"},
        {"kind": "chargeback"},
        {"event_id": None},
    ],
)
def test_purchase_contract_rejects_bad_fields(patch):
    with pytest.raises((ValidationError, ValueError)):
        parse_event_json(json.dumps({**GOOD, **patch}))


def test_engagement_contract():
    raw = {k: v for k, v in GOOD.items() if k not in ("amount", "currency")}
    event = parse_event_json(json.dumps({**raw, "kind": "email_open", "weight": 2}))
    assert event.kind == "email_open" and event.weight == 2
    with pytest.raises(ValidationError):
        parse_event_json(json.dumps({**raw, "kind": "Email Open"}))


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_jsonl_reader_reports_bad_lines_with_numbers(tmp_path):
    lines = [
        json.dumps(GOOD),
        "{not json",
        json.dumps({**GOOD, "event_id": "e2", "amount": "-1"}),
        "",
        "[1]",
    ]
    items = list(read_events(write(tmp_path, "e.jsonl", "\n".join(lines)), "jsonl"))
    rejects = [i for i in items if isinstance(i, Reject)]
    assert [r.line for r in rejects] == [2, 3, 5]
    assert len(items) == 4


def test_non_utf8_line_is_rejected(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n\xff\xfe\n")
    rejects = [i for i in read_events(path, "jsonl") if isinstance(i, Reject)]
    assert rejects[0].line == 2 and "UTF-8" in rejects[0].error


def test_csv_reader(tmp_path):
    text = (
        "event_id,customer_id,occurred_at,amount,currency,kind\n"
        "a,c1,2025-01-01T00:00:00Z,10.00,USD,purchase\n"
        "b,c1,2025-01-02T00:00:00Z,oops,USD,purchase\n"
        "c,c1,2025-01-03T00:00:00Z,5,USD,refund\n"
    )
    items = list(read_events(write(tmp_path, "e.csv", text), "csv"))
    assert [type(i).__name__ for i in items] == ["PurchaseEvent", "Reject", "PurchaseEvent"]
    assert items[1].line == 3


def test_cli_replay_reports_rejects_and_strict_fails(tmp_path):
    lines = [
        json.dumps(GOOD),
        "garbage",
        json.dumps({**GOOD, "event_id": "e2", "customer_id": "c2"}),
    ]
    source = write(tmp_path, "e.jsonl", "\n".join(lines))
    runner = CliRunner()
    state_out, rejects_out, changes_out = (
        tmp_path / "s.jsonl",
        tmp_path / "r.jsonl",
        tmp_path / "c.jsonl",
    )
    result = runner.invoke(
        app,
        [
            "replay",
            str(source),
            "--format",
            "jsonl",
            "--as-of",
            "2025-02-01",
            "--quiet",
            "--state-out",
            str(state_out),
            "--rejects-out",
            str(rejects_out),
            "--changes-out",
            str(changes_out),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rejected"] == 1 and summary["customers"] == 2
    assert json.loads(rejects_out.read_text())["line"] == 2
    states = [json.loads(line) for line in state_out.read_text().splitlines()]
    assert {s["customer_id"] for s in states} == {"c1", "c2"}
    assert all(s["recency_days"] == 30 for s in states)
    changes = [json.loads(line) for line in changes_out.read_text().splitlines()]
    assert changes and all(c["emitted_at"] for c in changes)
    strict = runner.invoke(app, ["replay", str(source), "--format", "jsonl", "--strict", "--quiet"])
    assert strict.exit_code == 1


def test_cli_replay_bad_window_is_a_usage_error(tmp_path):
    source = write(tmp_path, "e.jsonl", json.dumps(GOOD))
    result = CliRunner().invoke(app, ["replay", str(source), "--window-days", "0"])
    assert result.exit_code == 2
