"""`tierstream config propose` on CDNOW equals two replays with the two configs, compared
customer by customer: matrices, revenue per tier and the list of customers who move.

A CDNOW subset (customers 00001-06000, a quarter of the file) keeps it quick; the
comparison does not depend on the size.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tierstream.cli import app
from tierstream.readers import bundled_cdnow_path
from tierstream.settings import DEFAULT_CONFIG

AS_OF = "1998-07-01"
NONE = "(none)"


@pytest.fixture(scope="module")
def cdnow_part(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cdnow") / "cdnow-part.txt"
    lines = bundled_cdnow_path().read_text().splitlines(keepends=True)
    path.write_text("".join([lines[0], *(x for x in lines[1:] if x.split()[0] <= "06000")]))
    return path


def proposed_config(tmp_path: Path) -> Path:
    """Other weights, a lower VIP bar, a shorter window and a renamed segment."""
    text = (
        DEFAULT_CONFIG.read_text()
        .replace(
            '{r: "0.35", f: "0.25", m: "0.30", e: "0.10"}',
            '{r: "0.25", f: "0.25", m: "0.40", e: "0.10"}',
        )
        .replace('{name: VIP, min_score: "4.2"}', '{name: VIP, min_score: "3.9"}')
        .replace("window_days: 365", "window_days: 180")
        .replace("name: Hibernating,", "name: Dormant,")
    )
    path = tmp_path / "proposed.yaml"
    path.write_text(text)
    return path


def cli(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def replay_states(data: Path, config: Path, out: Path) -> dict[str, dict[str, Any]]:
    cli(
        "replay", str(data), "--format", "cdnow", "--as-of", AS_OF,
        "--config", str(config), "--state-out", str(out), "--quiet",
    )  # fmt: skip
    records = (json.loads(line) for line in out.read_text().splitlines())
    return {r["customer_id"]: r for r in records}


def test_propose_equals_two_replays_customer_by_customer(
    cdnow_part: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TIERSTREAM_WINDOW_DAYS", raising=False)
    new = proposed_config(tmp_path)
    changes = tmp_path / "changes.jsonl"
    result = cli(
        "config", "propose", str(new), "--replay", str(cdnow_part), "--format", "cdnow",
        "--as-of", AS_OF, "--current", str(DEFAULT_CONFIG), "--json",
        "--changes-out", str(changes), "--plot", str(tmp_path / "moves.png"),
    )  # fmt: skip
    proposal = json.loads(result.stdout)
    assert (tmp_path / "moves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    before = replay_states(cdnow_part, Path(str(DEFAULT_CONFIG)), tmp_path / "before.jsonl")
    after = replay_states(cdnow_part, new, tmp_path / "after.jsonl")
    assert set(before) == set(after)
    tiers: Counter[tuple[str, str]] = Counter()
    segments: Counter[tuple[str, str]] = Counter()
    revenue: dict[str, dict[str, Decimal]] = {
        "before": defaultdict(Decimal),
        "after": defaultdict(Decimal),
    }
    moved = {}
    for cid, old in before.items():
        new_record = after[cid]
        tiers[(old["tier"] or NONE, new_record["tier"] or NONE)] += 1
        segments[(old["segment"] or NONE, new_record["segment"] or NONE)] += 1
        revenue["before"][old["tier"] or NONE] += Decimal(old["monetary"])
        revenue["after"][new_record["tier"] or NONE] += Decimal(new_record["monetary"])
        if (old["tier"], old["segment"]) != (new_record["tier"], new_record["segment"]):
            moved[cid] = (old, new_record)

    assert proposal["customers"] == len(before) > 5000
    matrix = proposal["tiers"]["from_to"]
    assert {(a, b): n for a, row in matrix.items() for b, n in row.items() if n} == dict(tiers)
    matrix = proposal["segments"]["from_to"]
    assert {(a, b): n for a, row in matrix.items() for b, n in row.items() if n} == dict(segments)
    assert "Dormant" in matrix["Hibernating"] and "Hibernating" not in matrix["Lost"]
    for side in ("before", "after"):
        shown = {t: Decimal(v) for t, v in proposal["revenue"][side].items() if Decimal(v)}
        assert shown == {t: v for t, v in revenue[side].items() if v}
    assert proposal["tier_changes"] == sum(1 for o, n in moved.values() if o["tier"] != n["tier"])
    assert proposal["tier_changes"] > 100  # the proposal moves customers: the test has teeth

    lines = [json.loads(line) for line in changes.read_text().splitlines()]
    assert [line["customer_id"] for line in lines] == sorted(moved)
    for line in lines:
        old, new_record = moved[line["customer_id"]]
        assert (line["tier_before"], line["tier_after"]) == (old["tier"], new_record["tier"])
        assert (line["segment_before"], line["segment_after"]) == (
            old["segment"],
            new_record["segment"],
        )
        assert Decimal(line["revenue_after"]) == Decimal(new_record["monetary"])


def test_propose_needs_exactly_one_source(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["config", "propose", str(DEFAULT_CONFIG)])
    assert result.exit_code == 2 and "--replay PATH or --live" in result.stderr


def test_an_invalid_proposal_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEFAULT_CONFIG.read_text().replace("window_days: 365", "window_days: 0"))
    result = CliRunner().invoke(
        app, ["config", "propose", str(bad), "--replay", "cdnow", "--format", "cdnow"]
    )
    assert result.exit_code == 2 and "window_days" in result.stderr
    assert "Traceback" not in result.output


def test_propose_with_trait_criteria_reads_the_profiles_as_replay_does(
    cdnow_part: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan that weighs traits needs the customers' traits: `--profiles` gives propose
    the same updates `replay --profiles` applies, and the placements agree."""
    monkeypatch.delenv("TIERSTREAM_WINDOW_DAYS", raising=False)
    small = tmp_path / "cdnow-small.txt"
    lines = cdnow_part.read_text().splitlines(keepends=True)
    small.write_text("".join([lines[0], *(x for x in lines[1:] if x.split()[0] <= "00400")]))
    profiles = tmp_path / "profiles.jsonl"
    profiles.write_text(
        "".join(
            json.dumps(
                {
                    "customer_id": f"{n:05d}",
                    "traits": {"referrals": n % 9, "pays_on_time": n % 3 != 0, "fees": n * 97},
                    "updated_at": "1997-06-01T00:00:00Z",
                }
            )
            + "\n"
            for n in range(1, 401, 2)
        )
    )
    b2b = Path(__file__).resolve().parents[2] / "configs" / "b2b-traits.yaml"
    result = cli(
        "config", "propose", str(b2b), "--replay", str(small), "--format", "cdnow",
        "--as-of", AS_OF, "--current", str(DEFAULT_CONFIG), "--json",
        "--profiles", str(profiles),
    )  # fmt: skip
    proposal = json.loads(result.stdout)

    def tiers_of(config: Path, out: Path) -> dict[str, str]:
        cli(
            "replay", str(small), "--format", "cdnow", "--as-of", AS_OF, "--config",
            str(config), "--state-out", str(out), "--profiles", str(profiles), "--quiet",
        )  # fmt: skip
        records = (json.loads(line) for line in out.read_text().splitlines())
        return {r["customer_id"]: r["tier"] or NONE for r in records}

    before = tiers_of(Path(str(DEFAULT_CONFIG)), tmp_path / "before.jsonl")
    after = tiers_of(b2b, tmp_path / "after.jsonl")
    expected = Counter((before[cid], after[cid]) for cid in before)
    matrix = proposal["tiers"]["from_to"]
    assert {(a, b): n for a, row in matrix.items() for b, n in row.items() if n} == dict(expected)
    without = json.loads(
        cli(
            "config", "propose", str(b2b), "--replay", str(small), "--format", "cdnow",
            "--as-of", AS_OF, "--current", str(DEFAULT_CONFIG), "--json",
        ).stdout
    )  # fmt: skip
    assert without["tiers"]["from_to"] != matrix  # the traits move customers: the test has teeth
