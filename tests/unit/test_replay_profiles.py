"""``tierstream replay --profiles``: trait updates merged into the events in time order."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tierstream.cli import app

B2B = Path(__file__).resolve().parents[2] / "configs" / "b2b-traits.yaml"


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _buy(n: int, customer: str, day: str, amount: str = "6000") -> dict[str, str]:
    return {
        "event_id": f"e{n}",
        "customer_id": customer,
        "occurred_at": f"{day}T10:00:00Z",
        "amount": amount,
        "currency": "USD",
    }


def _replay(tmp_path: Path, events: Path, *extra: str) -> tuple[list[dict], dict, dict]:  # type: ignore[type-arg]
    changes, states = tmp_path / "changes.jsonl", tmp_path / "states.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "replay",
            str(events),
            "--config",
            str(B2B),
            "--as-of",
            "2025-03-31",
            "--quiet",
            "--changes-out",
            str(changes),
            "--state-out",
            str(states),
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    records = {r["customer_id"]: r for r in map(json.loads, states.read_text().splitlines())}
    return [json.loads(line) for line in changes.read_text().splitlines()], records, summary


def test_profiles_move_customers_in_event_time_order(tmp_path: Path) -> None:
    events = _jsonl(
        tmp_path / "events.jsonl",
        [
            _buy(1, "a", "2025-03-01"),
            _buy(2, "b", "2025-03-01"),
            _buy(3, "a", "2025-03-20", "16000"),
        ],
    )
    rich = {"referrals": 5, "pays_on_time": True, "fees": 25000, "strategic_fit": 9}
    profiles = _jsonl(
        tmp_path / "profiles.jsonl",
        [
            # out of file order: the later update is listed first and still wins for "a"
            {"customer_id": "a", "traits": rich, "updated_at": "2025-03-10T00:00:00Z"},
            {"customer_id": "a", "traits": {"referrals": 1}, "updated_at": "2025-03-05T00:00:00Z"},
            # "b": traits, then a tombstone (traits null) that deletes them
            {"customer_id": "b", "traits": rich, "updated_at": "2025-03-02T00:00:00Z"},
            {"customer_id": "b", "traits": None, "updated_at": "2025-03-15T00:00:00Z"},
            {"customer_id": "c", "traits": {"referrals": 2}, "updated_at": "2025-03-03T00:00:00Z"},
            {
                "customer_id": "a",
                "traits": {"x": {"nested": 1}},
                "updated_at": "2025-03-04T00:00:00Z",
            },
        ],
    )
    plain, plain_records, _ = _replay(tmp_path, events)
    assert {c["cause"] for c in plain} == {"purchase"}
    changes, records, summary = _replay(tmp_path, events, "--profiles", str(profiles))
    assert summary["profiles"] == 5 and summary["stale_profiles"] == 0
    assert summary["events"] == 3  # profile updates are not counted as events
    by_customer = {cid: [c for c in changes if c["customer_id"] == cid] for cid in "ab"}
    a = [(c["cause"], c["new_tier"], c["occurred_at"][:10]) for c in by_customer["a"]]
    assert a == [
        ("purchase", "Bronze", "2025-03-01"),
        ("profile", "Gold", "2025-03-10"),
        ("purchase", "Platinum", "2025-03-20"),  # (20+10+24+3 + 28+45+32+30)/48 = 4.0
    ]
    assert "referrals 1→5" in by_customer["a"][1]["reason"]  # 03-05 set referrals 1
    b = [(c["cause"], c["new_tier"], c["occurred_at"][:10]) for c in by_customer["b"]]
    assert b == [
        ("purchase", "Bronze", "2025-03-01"),
        ("profile", "Gold", "2025-03-02"),
        ("profile", "Bronze", "2025-03-15"),
    ]
    assert by_customer["b"][2]["reason"].startswith("profile deleted")
    # versions chain without gaps, as on the tier-changes topic
    assert [c["version"] for c in by_customer["b"]] == [1, 2, 3]
    assert records["a"]["traits"] == {
        "fees": "25000",
        "pays_on_time": True,
        "referrals": "5",
        "strategic_fit": "9",
    }
    assert "traits" not in records["b"] and records["b"]["tier"] == "Bronze"
    assert records["c"]["tier"] is None and records["c"]["traits"] == {"referrals": "2"}
    assert records["a"]["tier"] == "Platinum" and plain_records["a"]["tier"] == "Bronze"


def test_a_bad_profiles_line_is_one_warning_and_a_missing_file_exit_2(tmp_path: Path) -> None:
    events = _jsonl(tmp_path / "events.jsonl", [_buy(1, "a", "2025-03-01")])
    profiles = _jsonl(tmp_path / "profiles.jsonl", [{"customer_id": "a", "traits": {"x": [1]}}])
    _, _, summary = _replay(tmp_path, events, "--profiles", str(profiles))
    assert summary["profiles"] == 0
    result = CliRunner().invoke(
        app, ["replay", str(events), "--quiet", "--profiles", str(tmp_path / "missing.jsonl")]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "missing.jsonl" in result.output
