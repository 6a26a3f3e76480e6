"""erase and backfill refuse bad input with one line and exit 2, before any service."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from streams.deadletters import RawMessage, Rejected
from streams.erasing import parse_erasure
from tierstream.cli import app


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env=env)


@pytest.mark.parametrize("bad", ["", "tab\there", "x" * 300])
def test_erase_refuses_an_id_that_breaks_the_contract(bad):
    result = run("erase", "ok", bad)
    assert result.exit_code == 2 and "customer id" in result.output
    assert "Traceback" not in result.output


def test_backfill_refuses_a_name_it_cannot_read_the_format_of(tmp_path):
    path = tmp_path / "history.txt"
    path.write_text("x\n")
    result = run("backfill", str(path))
    assert result.exit_code == 2 and "pass --format" in result.output


@pytest.mark.parametrize(
    "args", [["backfill", "/nonexistent/h.jsonl"], ["backfill", "x", "--format", "xml"]]
)
def test_backfill_refuses_a_missing_file_or_a_bad_format(args):
    result = run(*args)
    assert result.exit_code == 2 and result.output.count("\n") == 1


def test_backfill_without_redis_is_one_line(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text("")
    result = run(
        "backfill", str(path), "--quiet", env={"TIERSTREAM_REDIS_URL": "redis://127.0.0.1:1/0"}
    )
    assert result.exit_code == 2 and "backfill stopped" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("key", "value", "kind"),
    [
        (b"c1", b"{nope", "not_json"),
        (b"c1", json.dumps({"customer_id": "c1"}).encode(), "invalid_event"),
        (b"c1", None, "empty"),
        (
            b"other",
            json.dumps(
                {"event_id": "r", "customer_id": "c1", "requested_at": "2026-01-01T00:00:00+00:00"}
            ).encode(),
            "key_mismatch",
        ),
        (
            b"c1",
            json.dumps(
                {"event_id": "r", "customer_id": "c1", "requested_at": "2026-01-01T00:00:00"}
            ).encode(),
            "invalid_event",
        ),
    ],
)
def test_malformed_erasure_requests_are_rejected_with_a_kind(key, value, kind):
    with pytest.raises(Rejected) as caught:
        parse_erasure(RawMessage("erasures", 0, 0, key, value))
    assert caught.value.kind == kind
