"""`tierstream config validate`: exit 0 for a valid config, else exit 2 naming every problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tierstream.cli import app
from tierstream.settings import DEFAULT_CONFIG


def validate(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["config", "validate", *args])


def test_the_default_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIERSTREAM_CONFIG", raising=False)
    result = validate()
    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout and "tiers VIP/A/B/C" in result.stdout


def test_every_problem_is_named_on_its_own_line(tmp_path: Path) -> None:
    text = (
        DEFAULT_CONFIG.read_text()
        .replace("window_days: 365", "window_days: -3")
        .replace("base_currency: USD", "base_currency: usd")
        .replace("method: fixed", "method: deciles")
    )
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = validate(str(path))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert "3 problems" in lines[0] and str(path) in lines[0]
    named = "\n".join(lines[1:])
    for field in ("window_days", "base_currency", "scores.method"):
        assert field in named, (field, named)
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("text", "needle"),
    [("tiers: [unclosed\n", "not YAML"), ("- just\n- a list\n", "YAML mapping")],
)
def test_not_a_config_at_all(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    result = validate(str(path))
    assert result.exit_code == 2 and needle in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 2  # the headline and the one problem


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    result = validate(str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "nope.yaml" in result.stderr


def test_without_a_file_the_configured_one_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(DEFAULT_CONFIG.read_text().replace("window_days: 365", "window_days: 0"))
    monkeypatch.setenv("TIERSTREAM_CONFIG", str(path))
    result = validate()
    assert result.exit_code == 2 and "mine.yaml" in result.stderr
