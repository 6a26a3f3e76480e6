"""Acceptance: KPIs by tier and by RFM segment equal an independent pandas computation.

The reference reads CDNOW_master.txt itself (tests/reference.py), scores and places every
customer from the config's cut points, weights and segment map (no hysteresis, so a
placement is a function of the figures), and computes each KPI from its definition in
docs/kpis.md. Lifetime value figures are checked against ``lifetimes``' own conditional
expectations with the same fitted parameters.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from decimal import Decimal

import lifetimes
import numpy as np
import pandas as pd
import pytest

from scoring.config import ScoringConfig
from scoring.engine import Scorer
from tests.cdnow import cdnow_history
from tests.reference import load_cdnow
from tierstream.clv import features_of, fit
from tierstream.kpis import kpi_table, population
from tierstream.replay import ReplayStats, replay

pytestmark = pytest.mark.slow

CASES = [(date(1998, 7, 1), 365), (date(1997, 10, 15), 90)]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return load_cdnow()


@pytest.fixture(scope="module")
def replayed(no_hysteresis_config):
    """One replay per case, shared by the tests (two full CDNOW runs in all)."""
    events = list(cdnow_history())
    done = {}

    def run(as_of: date, window: int):
        if (as_of, window) not in done:
            config = no_hysteresis_config.model_copy(update={"window_days": window})
            moment = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
            done[as_of, window] = replay(
                events, Scorer(config), as_of=moment, emit=lambda c: None, stats=ReplayStats()
            )
        return done[as_of, window]

    return run


def _count_at_least(values: pd.Series, cuts) -> pd.Series:
    return sum((values >= float(c)).astype(int) for c in cuts)


def reference_customers(frame: pd.DataFrame, config: ScoringConfig, as_of: date) -> pd.DataFrame:
    """Per customer: tier, segment and the KPI inputs, from the raw file and the config."""
    t = (pd.Timestamp(as_of) - pd.Timestamp("1970-01-01")).days
    n = config.window_days
    seen = frame[frame["day"] <= t]
    window = seen[seen["day"] > t - n]
    before = seen[(seen["day"] > t - 2 * n) & (seen["day"] <= t - n)]
    out = seen.groupby("customer_id").agg(last_day=("day", "max"))
    out["frequency"] = window.groupby("customer_id").size()
    out["cents"] = window.groupby("customer_id")["cents"].sum()
    out = out.fillna({"frequency": 0, "cents": 0}).astype({"frequency": int, "cents": int})
    out["bought_now"] = out.index.isin(window["customer_id"])
    out["bought_before"] = out.index.isin(before["customer_id"])
    s = config.scores
    recency = t - out["last_day"]
    r = 1 + sum((recency <= float(c)).astype(int) for c in s.recency.thresholds)
    f = 1 + _count_at_least(out["frequency"], s.frequency.thresholds)
    m = 1 + _count_at_least(out["cents"] / 100, s.monetary.thresholds)
    e = 1 + _count_at_least(pd.Series(0, index=out.index), s.engagement.thresholds)
    w = {k: float(v) for k, v in config.tiers.weights.items()}
    weighted = w.get("r", 0) * r + w.get("f", 0) * f + w.get("m", 0) * m + w.get("e", 0) * e
    tier = pd.Series(None, index=out.index, dtype=object)
    for level in reversed(config.tiers.levels):  # the highest level reached wins
        tier[weighted >= float(level.min_score) - 1e-9] = level.name
    out["tier"] = tier
    fm = (f + m + 1) // 2
    segment = pd.Series(None, index=out.index, dtype=object)
    for rule in reversed(config.segments):  # the first matching rule wins
        hit = pd.Series(True, index=out.index)
        for rng, value in ((rule.r, r), (rule.f, f), (rule.m, m), (rule.fm, fm)):
            if rng is not None:
                hit &= (value >= rng[0]) & (value <= rng[1])
        segment[hit] = rule.name
    out["segment"] = segment
    return out


def reference_kpis(customers: pd.DataFrame, by: str) -> dict[str, dict[str, object]]:
    total_customers = len(customers)
    total_cents = int(customers["cents"].sum())
    out = {}
    for name, group in customers.groupby(by):
        cents = int(group["cents"].sum())
        purchases = int(group["frequency"].sum())
        top = math.ceil(len(group) / 5)
        top_cents = int(group["cents"].sort_values(ascending=False).iloc[:top].sum())
        previous = group[group["bought_before"]]
        retained = int(previous["bought_now"].sum())
        out[name] = {
            "customers": len(group),
            "customer_share": len(group) / total_customers,
            "revenue": Decimal(cents) / 100,
            "revenue_share": cents / total_cents,
            "top20_revenue_share": top_cents / cents if cents > 0 else None,
            "average_order_value": (
                (Decimal(cents) / 100 / purchases).quantize(Decimal("0.01")) if purchases else None
            ),
            "purchases_per_customer": purchases / len(group),
            "previous_buyers": len(previous),
            "retained": retained,
            "retention": retained / len(previous) if len(previous) else None,
        }
    return out


@pytest.mark.parametrize(("as_of", "window"), CASES)
def test_kpis_by_tier_and_segment_match_pandas(replayed, frame, as_of, window):
    result = replayed(as_of, window)
    config = result.scorer.config
    moment = result.as_of
    people = population(result.scorer, result.states.values(), moment)
    reference = reference_customers(frame, config, as_of)
    assert people.period_days == window
    assert len(people.customers) == len(reference)
    for by in ("tier", "segment"):
        table = kpi_table(result.scorer, people, by)
        want = reference_kpis(reference, by)
        got = {row["group"]: row for row in table["groups"] if row["customers"]}
        assert set(got) == set(want), by
        for name, expected in want.items():
            row = got[name]
            for key, value in expected.items():
                have = row[key]
                if key in ("revenue", "average_order_value") and have is not None:
                    have = Decimal(have)
                if isinstance(value, float):
                    assert have == pytest.approx(value, rel=1e-12), (by, name, key)
                else:
                    assert have == value, (by, name, key)
            assert row["churn_rate"] == (None if row["retention"] is None else 1 - row["retention"])
        assert table["all"]["customers"] == len(reference)


def test_clv_figures_match_lifetimes(replayed, frame):
    """p_alive and clv_12m per customer equal lifetimes' conditional expectations, and the
    KPI means are the means of those."""
    result = replayed(*CASES[0])
    moment, config = result.as_of, result.scorer.config
    day = (moment.date() - date(1970, 1, 1)).days
    snapshot = fit(features_of(result.states.values(), day), config.clv, moment)
    # The reference summary, from the raw file: purchase days, per-day net amounts.
    daily = frame.groupby(["customer_id", "day"])["cents"].sum().reset_index()
    summary = daily.groupby("customer_id").agg(
        n=("day", "size"), first=("day", "min"), last=("day", "max"), cents=("cents", "sum")
    )
    x = (summary["n"] - 1).to_numpy(dtype=float)
    t_x = (summary["last"] - summary["first"]).to_numpy(dtype=float)
    age = (day - summary["first"]).to_numpy(dtype=float)
    bgf = lifetimes.BetaGeoFitter()
    b = snapshot.bgnbd
    bgf.params_ = pd.Series({"r": b.r, "alpha": b.alpha, "a": b.a, "b": b.b})
    ggf = lifetimes.GammaGammaFitter()
    g = snapshot.gamma_gamma
    ggf.params_ = pd.Series({"p": g.p, "q": g.q, "v": g.v})
    alive = bgf.conditional_probability_alive(x, t_x, age)
    purchases = bgf.conditional_expected_number_of_purchases_up_to_time(365, x, t_x, age)
    spend = ggf.conditional_expected_average_profit(
        summary["n"], summary["cents"] / 100 / summary["n"]
    ).to_numpy()
    want = pd.DataFrame({"p_alive": alive, "clv": purchases * spend}, index=summary.index)
    people = population(result.scorer, result.states.values(), moment, clv=snapshot)
    got = pd.DataFrame(
        {
            "p_alive": [c.p_alive for c in people.customers],
            "clv": [c.clv_12m for c in people.customers],
        },
        index=[c.customer_id for c in people.customers],
    ).loc[want.index]
    np.testing.assert_allclose(got["p_alive"], want["p_alive"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got["clv"], want["clv"], rtol=1e-9, atol=1e-9)
    table = kpi_table(result.scorer, people, "tier")
    tiers = {c.customer_id: c.groups["tier"] for c in people.customers}
    for row in table["groups"]:
        members = [cid for cid, tier in tiers.items() if tier == row["group"]]
        if members:
            assert row["mean_p_alive"] == pytest.approx(
                want.loc[members, "p_alive"].mean(), rel=1e-9
            )
            assert row["mean_clv_12m"] == pytest.approx(want.loc[members, "clv"].mean(), rel=1e-9)
