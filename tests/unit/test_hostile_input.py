"""Hostile input never crashes a command (issue "No input crashes a command", part 3).

SPEC (README): malformed input lines are counted, reported with their line numbers,
written to ``--rejects-out`` when given, and skipped; the replay goes on (exit 0) unless
``--strict``. Anything else hostile gets one clear line and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner, Result

from scoring.events import PurchaseEvent
from tierstream import api
from tierstream.cli import app
from tierstream.readers import MAX_LINE_BYTES, MAX_NESTING, Reject, read_events

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


# --- an unknown currency: a reject, like any other malformed line -----------------------


def test_unknown_currency_is_a_reject_with_its_line_number(tmp_path: Path) -> None:
    yen = {**GOOD, "event_id": "e2", "currency": "JPY"}
    source = jsonl(tmp_path, GOOD, yen)
    rejects_out = tmp_path / "r.jsonl"
    result = replay(source, "--rejects-out", str(rejects_out))
    assert result.exit_code == 0, result.output
    assert summary(result)["rejected"] == 1 and summary(result)["applied"] == 1
    assert "line 2" in result.stderr and "JPY" in result.stderr
    assert json.loads(rejects_out.read_text()) == {
        "line": 2,
        "error": "no exchange rate configured for currency 'JPY'",
        "raw": json.dumps(yen),
    }
    strict = replay(source, "--strict")
    assert strict.exit_code == 1 and "line 2" in strict.stderr


def test_configured_currency_is_still_accepted(tmp_path: Path) -> None:
    source = jsonl(tmp_path, {**GOOD, "currency": "EUR"})
    result = replay(source)
    assert result.exit_code == 0 and summary(result)["rejected"] == 0


def test_unknown_currency_is_a_reject_in_segments_replay(tmp_path: Path) -> None:
    lines = [{**GOOD, "event_id": f"e{i}", "customer_id": f"c{i}"} for i in range(30)]
    source = jsonl(tmp_path, *lines, {**GOOD, "event_id": "yen", "currency": "JPY"})
    result = invoke(
        "segments", "--replay", str(source), "--format", "jsonl", "--as-of", "2025-02-01"
    )
    assert result.exit_code == 0, (result.output, result.exception)


def test_segments_from_too_few_customers_is_one_line_exit_2(tmp_path: Path) -> None:
    source = jsonl(tmp_path, GOOD)
    result = invoke(
        "segments", "--replay", str(source), "--format", "jsonl", "--as-of", "2025-02-01"
    )
    assert_one_line_error(result, "too few customers")


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


def nested(depth: int) -> dict[str, Any]:
    """An event whose JSON is ``depth`` levels deep (the event object is level 1)."""
    value: Any = 1
    for _ in range(depth - 2):
        value = [value]
    return {**GOOD, "attributes": {"a": value}}


def test_the_nesting_limit_is_the_workers(tmp_path: Path) -> None:
    # json.loads copes with 900 levels; the worker's parser dead-letters more than 200.
    accepted, refused = json.dumps(nested(MAX_NESTING)), json.dumps(nested(MAX_NESTING + 1))
    PurchaseEvent.model_validate_json(accepted)
    with pytest.raises(ValidationError, match="recursion limit"):
        PurchaseEvent.model_validate_json(refused)
    items = list(read_events(jsonl(tmp_path, accepted, refused), "jsonl"))
    assert isinstance(items[0], PurchaseEvent)
    assert isinstance(items[1], Reject) and "nested" in items[1].error


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


def test_a_line_without_end_is_rejected_without_loading_it(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    with path.open("wb") as handle:
        handle.write(json.dumps(GOOD).encode() + b"\n")
        for _ in range(16):  # 16 MiB with no newline, then a good line
            handle.write(b"x" * (1 << 20))
        handle.write(b"\n" + json.dumps({**GOOD, "event_id": "e2"}).encode() + b"\n")
    tracemalloc.start()
    try:
        items = list(read_events(path, "jsonl"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [type(i).__name__ for i in items] == ["PurchaseEvent", "Reject", "PurchaseEvent"]
    assert isinstance(items[1], Reject) and items[1].line == 2 and "longer" in items[1].error
    assert peak < 4 * MAX_LINE_BYTES, peak


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

# The last one crashed with OverflowError; 9999-12-31 itself scored with recency in the
# millions of days, and 0001-01-01 put every event after the as-of: refused now.
BAD_AS_OF = [
    "yesterday",
    "9999-12-31",
    "9999-12-31T23:59:59+00:00",
    "0001-01-01",
    "9999-12-31T23:59:59-05:00",
]


@pytest.mark.parametrize("as_of", BAD_AS_OF)
def test_replay_bad_as_of_is_one_line_exit_2(tmp_path: Path, as_of: str) -> None:
    result = invoke("replay", str(jsonl(tmp_path, GOOD)), "--as-of", as_of, "--quiet")
    assert_one_line_error(result, "--as-of")


@pytest.mark.parametrize("command", ["segments", "export", "customer"])
def test_other_commands_bad_as_of_is_one_line_exit_2(tmp_path: Path, command: str) -> None:
    args = {
        "segments": ["segments", "--replay", str(jsonl(tmp_path, GOOD)), "--format", "jsonl"],
        "export": ["export", "--state-out", str(tmp_path / "s.jsonl")],
        "customer": ["customer", "c1"],
    }[command]
    for as_of in ("yesterday", "9999-12-31"):
        # Checked before Redis is touched: the answer does not depend on the services.
        assert_one_line_error(invoke(*args, "--as-of", as_of), "--as-of")


@pytest.mark.parametrize("as_of", BAD_AS_OF)
def test_api_as_of_out_of_range_is_a_value_error(as_of: str) -> None:
    # The API answers 400 for ValueError (tests/integration/test_api.py covers the route).
    with pytest.raises(ValueError):
        api.parse_as_of(as_of)


# --- the PATH, --config --------------------------------------------------------------------


@pytest.mark.parametrize("command", ["replay", "produce", "segments"])
def test_directory_as_path_is_one_line_exit_2(tmp_path: Path, command: str) -> None:
    args = {
        "replay": ["replay", str(tmp_path), "--as-of", "2025-02-01"],
        "produce": ["produce", str(tmp_path)],
        "segments": ["segments", "--replay", str(tmp_path), "--format", "jsonl"],
    }[command]
    assert_one_line_error(invoke(*args), str(tmp_path))


@pytest.mark.parametrize("command", ["produce", "segments"])
def test_missing_path_is_one_line_exit_2(tmp_path: Path, command: str) -> None:
    missing = str(tmp_path / "nope.jsonl")
    args = {
        "produce": ["produce", missing],
        "segments": ["segments", "--replay", missing, "--format", "jsonl"],
    }[command]
    assert_one_line_error(invoke(*args), missing)


def test_unreadable_file_is_one_line_exit_2(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads a chmod 000 file; the directory case covers the OSError path")
    source = jsonl(tmp_path, GOOD)
    source.chmod(0)
    assert_one_line_error(replay(source), str(source))


@pytest.mark.parametrize("command", ["replay", "segments", "export"])
def test_unwritable_output_is_one_line_exit_2(tmp_path: Path, command: str) -> None:
    lines = [{**GOOD, "event_id": f"e{i}", "customer_id": f"c{i}"} for i in range(30)]
    source = str(jsonl(tmp_path, *lines))
    args = {
        "replay": ["replay", source, "--as-of", "2025-02-01", "--rejects-out", str(tmp_path)],
        "segments": ["segments", "--replay", source, "--format", "jsonl", "--save", str(tmp_path)],
        # Checked before Redis is touched.
        "export": ["export", "--state-out", str(tmp_path)],
    }[command]
    assert_one_line_error(invoke(*args), str(tmp_path))


@pytest.mark.parametrize(
    "content",
    [b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe", b'{"format": 1, "version": 1e400}', b"{}"],
    ids=["deep", "not-utf8", "huge-number", "empty"],
)
def test_hostile_segment_snapshot_is_one_line_exit_2(tmp_path: Path, content: bytes) -> None:
    snapshot = tmp_path / "snap.json"
    snapshot.write_bytes(content)
    result = replay(jsonl(tmp_path, GOOD), "--segments", str(snapshot))
    assert_one_line_error(result, str(snapshot))


@pytest.mark.parametrize("command", ["produce", "export", "customer"])
def test_bad_environment_settings_are_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setenv("TIERSTREAM_PARTITIONS", "secret-ish")
    args = {
        "produce": ["produce", str(jsonl(tmp_path, GOOD))],
        "export": ["export", "--state-out", str(tmp_path / "s.jsonl")],
        "customer": ["customer", "c1"],
    }[command]
    result = invoke(*args)
    assert_one_line_error(result, "TIERSTREAM_", "partitions")
    assert "secret-ish" not in result.stderr


def test_missing_config_from_the_environment_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = str(tmp_path / "nope.yaml")
    monkeypatch.setenv("TIERSTREAM_CONFIG", missing)
    # Loaded before Redis is touched.
    assert_one_line_error(invoke("export", "--state-out", str(tmp_path / "s.jsonl")), missing)


def test_missing_config_is_one_line_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = replay(jsonl(tmp_path, GOOD), "--config", str(missing))
    assert_one_line_error(result, str(missing))


DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


@pytest.mark.parametrize(
    ("before", "after", "needle"),
    [
        ("base_currency: USD", "base_currency: usd", "^[A-Z]{3}$"),
        # rich took "[red]" for markup: the user's own text vanished from the message.
        ("window_days: 365", "window_days: '[red]x'", "[red]x"),
        ("window_days: 365", "window_days: [365", "window_days"),  # not YAML
    ],
)
def test_config_error_is_one_verbatim_line(
    tmp_path: Path, before: str, after: str, needle: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(DEFAULT_CONFIG.read_text().replace(before, after))
    result = replay(jsonl(tmp_path, GOOD), "--config", str(config))
    assert_one_line_error(result, needle, str(config))


def test_reject_messages_keep_their_brackets(tmp_path: Path) -> None:
    # An engagement kind's pattern, '^[a-z][a-z0-9_]{0,63}$', was shown as '^{0,63}$'.
    engagement = {k: v for k, v in GOOD.items() if k not in ("amount", "currency")}
    result = replay(jsonl(tmp_path, {**engagement, "kind": "Email Open"}))
    assert result.exit_code == 0
    assert "^[a-z][a-z0-9_]{0,63}$" in result.stderr, result.stderr


def test_bad_format_and_window_are_one_line_exit_2(tmp_path: Path) -> None:
    source = str(jsonl(tmp_path, GOOD))
    assert_one_line_error(invoke("replay", source, "--format", "xml"), "--format")
    assert_one_line_error(invoke("replay", source, "--window-days", "0"), "--window-days")
