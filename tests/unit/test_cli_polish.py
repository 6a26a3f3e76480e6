"""The command line as a person meets it: version, short help, choices, readable output."""

from __future__ import annotations

from datetime import UTC, datetime

import typer.main
from rich.console import Console
from typer.testing import CliRunner

from scoring.events import PurchaseEvent
from tierstream import __version__
from tierstream.cli import app
from tierstream.customer_view import customer_table
from tierstream.shift import days_to_now, shift_days


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args))


def test_version_and_short_help() -> None:
    assert invoke("--version").stdout.strip() == f"tierstream {__version__}"
    for args in (["-h"], ["replay", "-h"], ["config", "-h"], ["topics", "create", "-h"]):
        result = invoke(*args)
        assert result.exit_code == 0 and "Usage" in result.stdout, (args, result.output)


def test_format_lists_its_choices_in_the_help() -> None:
    from tierstream.cli_input import FORMAT_CHOICES

    assert {"cdnow", "csv", "jsonl"} <= set(FORMAT_CHOICES)
    command = typer.main.get_command(app)
    for name in ("replay", "produce", "segments"):
        (option,) = [p for p in command.commands[name].params if p.name == "fmt"]  # type: ignore[attr-defined]
        assert option.metavar == "[" + "|".join(FORMAT_CHOICES) + "]", name
    assert "[cdnow|csv|jsonl" in invoke("replay", "-h").stdout


def test_a_first_tier_reads_new_not_none() -> None:
    result = invoke("replay", "cdnow", "--format", "cdnow", "--as-of", "1997-01-02")
    assert result.exit_code == 0, result.output
    change_lines = [line for line in result.stderr.splitlines() if "→" in line]
    assert change_lines and all("(new)→" in line for line in change_lines[:5]), result.stderr
    assert "None→" not in result.stderr


def test_customer_table_puts_tier_and_why_first() -> None:
    record = {
        "customer_id": "00003",
        "frequency": 3,
        "monetary": "95.40",
        "engagement": {},
        "tier": "B",
        "why": "tier B: weighted score 3.15",
        "behaviour": {"segment_id": 2, "label": "big spenders", "model_version": 4},
    }
    console = Console(width=100, record=True)
    console.print(customer_table(record))
    lines = [line.strip() for line in console.export_text().splitlines() if line.strip()]
    assert lines[0].split() == ["customer", "00003"]
    assert lines[1].split() == ["tier", "B"]
    assert "big spenders (behaviour 2, model v4)" in lines[2]
    assert any(line.startswith("engagement") and line.endswith("-") for line in lines)


def test_shift_to_now_moves_whole_days_and_keeps_the_gaps() -> None:
    def purchase(event_id: str, day: int) -> PurchaseEvent:
        return PurchaseEvent(
            event_id=event_id,
            customer_id="c",
            occurred_at=datetime(1997, 1, day, 15, tzinfo=UTC),
            amount="1",
            currency="USD",
        )

    events = [purchase("a", 1), purchase("b", 20)]
    now = datetime(2026, 3, 4, 9, tzinfo=UTC)
    days = days_to_now(events, now)
    moved = shift_days(events, days)
    assert moved[-1].occurred_at.date() == now.date()
    assert moved[-1].occurred_at.hour == 15  # whole days: the time of day is kept
    assert (moved[1].occurred_at - moved[0].occurred_at).days == 19
    assert [e.event_id for e in moved] == ["a", "b"]
