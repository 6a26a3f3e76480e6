"""KPI arithmetic, the archived totals, the CLV snapshot's parsing and the review's rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scoring.config import ReviewSettings
from scoring.days import utc_day
from scoring.engine import Scorer
from scoring.events import PurchaseEvent
from scoring.kpis import CustomerKpis, customer_kpis, group_kpis, overall_kpis, top_share
from scoring.state import Archived, CustomerState, DayTotals
from tierstream.cli import app
from tierstream.clv import ClvSnapshot, ClvSnapshotError
from tierstream.readers import bundled_cdnow_path
from tierstream.review import FileHistory, HistoryError, pick_previous, suggest


def kpis(cid: str, group: str | None, revenue: str, purchases: int, now: bool, before: bool):
    return CustomerKpis(cid, {"tier": group}, Decimal(revenue), purchases, now, before)


def test_top_share_takes_the_ceiling_of_a_fifth():
    assert top_share([Decimal(v) for v in ("50", "30", "10", "5", "5")]) == 0.5
    # 6 customers: ceil(1.2) = 2 of them
    assert top_share([Decimal(v) for v in ("40", "30", "10", "10", "5", "5")]) == 0.7
    assert top_share([Decimal(0), Decimal(0)]) is None
    assert top_share([]) is None


def test_group_kpis_follow_the_definitions():
    customers = [
        kpis("a", "VIP", "100", 4, True, True),
        kpis("b", "VIP", "50", 1, True, False),
        kpis("c", "C", "0", 0, False, True),
        kpis("d", "C", "10", 2, True, True),
        kpis("e", None, "99", 1, True, True),  # not placed: left out
    ]
    rows = {r.group: r for r in group_kpis(customers, "tier", order=["VIP", "A", "C"])}
    assert list(rows) == ["VIP", "A", "C"]
    vip, a, c = rows["VIP"], rows["A"], rows["C"]
    assert (vip.customers, vip.customer_share, vip.revenue) == (2, 0.5, Decimal(150))
    assert vip.revenue_share == pytest.approx(150 / 160)
    assert vip.average_order_value == Decimal(30)
    assert vip.purchases_per_customer == 2.5
    assert (vip.previous_buyers, vip.retained, vip.retention, vip.churn_rate) == (1, 1, 1.0, 0.0)
    assert (c.previous_buyers, c.retained, c.retention, c.churn_rate) == (2, 1, 0.5, 0.5)
    assert a.customers == 0 and a.retention is None and a.average_order_value is None
    assert vip.mean_p_alive is None and vip.mean_clv_12m is None
    assert overall_kpis(customers[:4]).retention == pytest.approx(2 / 3)


def test_customer_kpis_see_the_previous_window_through_the_archived_day():
    state = CustomerState("x")
    state.days = {100: DayTotals(2, Decimal("20")), 40: DayTotals(0, Decimal("-5"))}
    # this window (50, 100], previous (0, 50]: day 40 has only a refund
    one = customer_kpis(state, 100, 50, {})
    assert (one.revenue, one.purchases, one.bought_now, one.bought_before) == (
        Decimal(20),
        2,
        True,
        False,
    )
    state.archived = Archived(3, Decimal("30"), 10)  # latest pruned purchase day: 10
    assert customer_kpis(state, 100, 50, {}).bought_before is True
    assert customer_kpis(state, 100, 45, {}).bought_before is False  # previous: (10, 55]


def test_pruned_purchase_days_are_archived_and_round_trip(default_config):
    scorer = Scorer(default_config.model_copy(update={"window_days": 30}))
    state = CustomerState("c1")
    for n, (day, amount) in enumerate(
        [("1998-01-01", "10"), ("1998-01-01", "5"), ("1998-01-10", "7")]
    ):
        moment = datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC)
        event = PurchaseEvent(
            event_id=f"e{n}",
            customer_id="c1",
            occurred_at=moment,
            amount=Decimal(amount),
            currency="USD",
        )
        scorer.apply(state, event, moment)
    assert state.archived is None
    later = datetime(1998, 3, 1, tzinfo=UTC)
    record_before = scorer.record(state.copy(), later)
    scorer.advance(state, later)
    assert state.days == {}
    assert state.archived == Archived(2, Decimal("22"), utc_day(datetime(1998, 1, 10, tzinfo=UTC)))
    assert scorer.record(state) == record_before  # archiving changes no figure
    clone = state.copy()
    clone.archived.purchase_days += 1  # type: ignore[union-attr]
    assert state.archived.purchase_days == 2
    raw = json.loads(json.dumps(state.to_dict()))
    assert raw["a"] == [2, "22", utc_day(datetime(1998, 1, 10, tzinfo=UTC))]
    assert CustomerState.from_dict(raw) == state


GOOD = {
    "format": 1,
    "version": 3,
    "fitted_at": "2026-01-01T00:00:00+00:00",
    "as_of": "1998-07-01T00:00:00+00:00",
    "horizon_days": 365,
    "bgnbd": {"r": 0.27, "alpha": 41.9, "a": 0.49, "b": 2.14},
    "gamma_gamma": {"p": 5.8, "q": 4.1, "v": 19.2},
    "customers": 100,
    "repeat_customers": 50,
    "library": "lifetimes 0.11.3",
}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(format=2),
        lambda d: d["bgnbd"].update(r=-1),
        lambda d: d["bgnbd"].update(alpha="nan"),
        lambda d: d["gamma_gamma"].update(q=0.5),
        lambda d: d["gamma_gamma"].update(p=[1]),
        lambda d: d.pop("bgnbd"),
        lambda d: d.update(version="x"),
    ],
)
def test_a_bad_clv_snapshot_is_one_error(mutate):
    raw = json.loads(json.dumps(GOOD))
    mutate(raw)
    with pytest.raises(ClvSnapshotError):
        ClvSnapshot.from_bytes(json.dumps(raw).encode())


def test_a_good_clv_snapshot_round_trips():
    snapshot = ClvSnapshot.from_bytes(json.dumps(GOOD).encode())
    assert ClvSnapshot.from_bytes(snapshot.to_bytes()) == snapshot
    for junk in (b"", b"[]", b"{" * 100_000, b"\xff"):
        with pytest.raises(ClvSnapshotError):
            ClvSnapshot.from_bytes(junk)


def group(name, customers, share, rpc, retention, spread=None, previous=None):
    trend = (
        None
        if previous is None
        else {"customers": customers - previous, "previous_customers": previous}
    )
    return {
        "group": name,
        "customers": customers,
        "customer_share": share,
        "revenue_per_customer": rpc,
        "retention": retention,
        "revenue_spread": spread,
        "trend": trend,
    }


def test_review_suggestions_follow_the_thresholds():
    settings = ReviewSettings()
    groups = [
        group("Big", 500, 0.5, 100.0, 0.60, spread=2.5, previous=500),
        group("Twin", 300, 0.3, 95.0, 0.62, previous=300),
        group("Tiny", 10, 0.01, 20.0, 0.2, previous=10),
        group("Shrunk", 190, 0.19, 40.0, 0.3, previous=400),
        group("Gone", 0, 0.0, 0.0, None, previous=5),
    ]
    got = {
        (s["action"], s["group"], s.get("with", "")) for s in suggest(groups, settings, first=False)
    }
    assert got == {
        ("split", "Big", ""),
        ("merge", "Big", "Twin"),
        ("merge", "Tiny", "Shrunk"),
        ("retire", "Shrunk", ""),
        ("retire", "Gone", ""),
    }
    first = {(s["action"], s["group"]) for s in suggest(groups, settings, first=True)}
    assert ("retire", "Shrunk") not in first  # shrinking needs an earlier review


def test_previous_review_and_history_file(tmp_path):
    reviews = [{"review_id": 1, "as_of": "1998-01-01"}, {"review_id": 2, "as_of": "1998-04-01"}]
    assert pick_previous(reviews, None)["review_id"] == 2
    assert pick_previous(reviews, datetime(1998, 3, 1, tzinfo=UTC))["review_id"] == 1
    assert pick_previous(reviews, datetime(1997, 3, 1, tzinfo=UTC)) is None
    assert pick_previous([], None) is None
    path = tmp_path / "reviews.json"
    assert FileHistory(path).load() == []
    path.write_text("{not json")
    with pytest.raises(HistoryError):
        FileHistory(path).load()
    path.write_text('[{"no": "as_of"}]')
    with pytest.raises(HistoryError):
        FileHistory(path).load()


def write_history(path, customers: int, repeat: bool) -> None:
    rows = ["event_id,customer_id,occurred_at,amount,currency"]
    for n in range(customers):
        rows.append(f"a{n},c{n},1998-01-{1 + n % 28:02d}T10:00:00Z,12.50,USD")
        for k in range(n % 4 if repeat else 0):  # 0 to 3 more purchases, months apart
            month, day = 2 + (n + 2 * k) % 5, 1 + (n * 7 + k) % 28
            rows.append(f"b{n}-{k},c{n},1998-0{month}-{day:02d}T10:00:00Z,{8 + n % 30}.00,USD")
    path.write_text("\n".join(rows) + "\n")


def cdnow_subset(path, below: str) -> int:
    """The bundled CDNOW file's lines of customers with ids below ``below``."""
    lines = Path(bundled_cdnow_path()).read_text().splitlines()
    kept = [line for line in lines if line.split()[0] < below]
    path.write_text("\n".join(kept) + "\n")
    return len({line.split()[0] for line in kept})


def test_clv_fit_on_too_little_data_is_one_line_exit_2_and_no_file(tmp_path):
    history = tmp_path / "h.csv"
    write_history(history, 150, repeat=False)  # enough customers, nobody bought twice
    save = tmp_path / "clv.json"
    runner = CliRunner()
    args = ["clv", "fit", "--replay", str(history), "--format", "csv", "--as-of", "1998-07-01"]
    result = runner.invoke(app, [*args, "--save", str(save)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "0 customers with a second purchase day" in lines[0]
    assert not save.exists()
    write_history(history, 150, repeat=True)  # degenerate: the optimizer gives up
    result = runner.invoke(app, [*args, "--save", str(save)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "did not converge" in lines[0]
    assert not save.exists()
    real = tmp_path / "cdnow.txt"
    customers = cdnow_subset(real, "01000")
    args = ["clv", "fit", "--replay", str(real), "--format", "cdnow", "--as-of", "1998-07-01"]
    result = runner.invoke(app, [*args, "--save", str(save)])
    assert result.exit_code == 0, result.output
    assert ClvSnapshot.from_bytes(save.read_bytes()).customers == customers


def test_review_from_a_replay_keeps_its_history(tmp_path):
    history = tmp_path / "h.csv"
    write_history(history, 150, repeat=True)
    kept = tmp_path / "reviews.json"
    runner = CliRunner()
    base = ["review", "--replay", str(history), "--format", "csv", "--history", str(kept), "--json"]
    first = json.loads(runner.invoke(app, [*base, "--as-of", "1998-04-01"]).stdout)
    assert first["first"] is True
    second = json.loads(runner.invoke(app, [*base, "--as-of", "1998-07-01"]).stdout)
    assert second["compared_with"] == {"review_id": 1, "as_of": "1998-04-01"}
    assert second["dimensions"]["segment"]["flows_source"] == "replayed tier changes"
    flows = [g["flows"] for g in second["dimensions"]["segment"]["groups"]]
    assert sum(f["in"] for f in flows) == sum(f["out"] for f in flows) > 0
    assert [r["review_id"] for r in json.loads(kept.read_text())] == [1, 2]
    # With a behavioural segment model, the behaviour groups and their flows are reviewed too.
    model = tmp_path / "segments.json"
    learned = runner.invoke(
        app,
        ["segments", "--replay", str(history), "--format", "csv", "--as-of", "1998-04-01"]
        + ["--save", str(model), "--json", "--k", "3"],
    )
    assert learned.exit_code == 0, learned.output
    third = json.loads(
        runner.invoke(app, [*base, "--as-of", "1998-07-01", "--segments", str(model)]).stdout
    )
    behaviour = third["dimensions"]["behaviour"]
    assert sum(g["customers"] for g in behaviour["groups"]) == 150
    assert behaviour["flows_source"] == "replayed tier changes"
    kept.write_text("[1, 2]")
    broken = runner.invoke(app, [*base, "--as-of", "1998-07-01"])
    assert broken.exit_code == 2 and "not a list of reviews" in broken.output
    no_history = runner.invoke(app, ["review", "--replay", str(history), "--format", "csv"])
    assert no_history.exit_code == 2 and "--history" in no_history.output


def test_behaviour_moves_are_tallied_and_reviewed_from_the_store_totals():
    from scoring.engine import Change
    from tierstream.review import _flows
    from tierstream.stores import Batch, record_changes

    def move(cid: str, before: str | None, after: str) -> Change:
        moment = datetime(1998, 7, 1, tzinfo=UTC)
        return Change(
            customer_id=cid,
            version=2,
            previous_tier="C",
            new_tier="C",
            previous_segment="Lost",
            new_segment="Lost",
            cause="model_update",
            reason="test",
            recency_days=None,
            frequency=0,
            monetary=Decimal(0),
            r=1,
            f=1,
            m=1,
            occurred_at=moment,
            previous_behaviour=before,
            new_behaviour=after,
        )

    batch = Batch()
    record_changes(batch, [move("a", "x", "y"), move("b", "x", "y"), move("c", None, "x")])
    assert batch.tallies == {
        "change:model_update": 3,
        'flow:behaviour:["x","y"]': 2,
        'flow:behaviour:[null,"x"]': 1,
    }
    previous = {"as_of": "1998-06-01", "tallies": {'flow:behaviour:["x","y"]': 1}}
    flows, source = _flows(
        "behaviour", "1998-06-01", datetime(1998, 7, 1, tzinfo=UTC), batch.tallies, previous, None
    )
    assert source == "store flow totals"
    assert flows == {"x": {"in": 1, "out": 1}, "y": {"in": 1, "out": 0}}
