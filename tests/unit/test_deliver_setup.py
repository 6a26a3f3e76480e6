"""`tierstream deliver` start-up: a bad subscription is one clear line and exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from streams.deliver import signature
from tierstream.cli import app
from tierstream.settings import DEFAULT_CONFIG, Settings
from tierstream.topics import topics_from_settings

NO_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: refused at once


def config_file(tmp_path: Path, subscriptions: list[dict[str, Any]]) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    raw["subscriptions"] = subscriptions
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def hook(**extra: Any) -> dict[str, Any]:
    return {"url": "https://crm.example.com/hooks/vip", "secret_env": "VIP_HOOK_SECRET", **extra}


@pytest.mark.parametrize(
    ("subscriptions", "message"),
    [
        ([], "no subscriptions"),
        (
            [{"name": "v", "when": {"entered_tier": "Gold"}, "webhook": hook()}],
            "unknown tier 'Gold'",
        ),
        ([{"name": "v", "webhook": hook(url="crm.example.com/hook")}], "http:// or https://"),
        ([{"name": "v", "webhook": hook()}], "VIP_HOOK_SECRET is not set"),
    ],
)
def test_a_bad_subscription_is_a_clear_start_up_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, subscriptions: list[Any], message: str
) -> None:
    monkeypatch.setenv("TIERSTREAM_CONFIG", str(config_file(tmp_path, subscriptions)))
    # No Redis there: the published config cannot be read, the local file is used (a unit
    # test must not read whatever a shared Redis holds).
    monkeypatch.setenv("TIERSTREAM_REDIS_URL", NO_REDIS)
    monkeypatch.delenv("VIP_HOOK_SECRET", raising=False)
    result = CliRunner().invoke(app, ["deliver"])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_redis_unreachable_at_start_is_one_warning_then_the_local_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIERSTREAM_CONFIG", str(config_file(tmp_path, [])))
    monkeypatch.setenv("TIERSTREAM_REDIS_URL", NO_REDIS)
    result = CliRunner().invoke(app, ["deliver"])
    lines = result.output.splitlines()
    assert [line for line in lines if "published config not read yet" in line], result.output
    assert "no subscriptions" in result.output  # the local file's, checked next
    assert result.exit_code == 2


def test_derived_topics_are_created_with_the_input_partition_count(tmp_path: Path) -> None:
    config = config_file(tmp_path, [{"name": "v", "topic": "vip-entered"}])
    topics = topics_from_settings(Settings(config=config, partitions=6))
    assert topics["vip-entered"] == 6 == topics["tier-changes"]


def test_the_signature_is_the_hex_hmac_sha256_of_the_body() -> None:
    # RFC 4231 test case 2
    assert signature(b"Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
