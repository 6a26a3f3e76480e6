"""KPIs, lifetime value and the segment review over real Redis: CLI and API.

A CDNOW subset (customers 00001-05999, as of 1998-07-01) is committed to a private
namespace. ``clv fit`` publishes a snapshot; the lookup (API and ``customer``) and
``export`` carry each customer's p_alive and clv_12m from it; ``GET /kpis`` equals the
KPI computation on the same states; ``review`` says it is the first, then compares.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from scoring.days import utc_day
from scoring.engine import Scorer
from tests.api_schema import assert_valid
from tests.cdnow import cdnow_history
from tests.integration.api_support import Client, Served, commit_states
from tierstream.api import create_api
from tierstream.cli import app
from tierstream.clv import CLV_META, ClvSnapshot
from tierstream.kpis import kpi_table, population
from tierstream.replay import ReplayStats, replay
from tierstream.review import REVIEWS_META
from tierstream.settings import Settings, load_scoring_config
from tierstream.stores.redis import RedisStore

AS_OF = datetime(1998, 7, 1, tzinfo=UTC)
PARTITIONS = 4


@pytest.fixture(scope="module")
def replayed():
    events = [e for e in cdnow_history() if e.customer_id < "06000"]
    return replay(
        events,
        Scorer(load_scoring_config(None)),
        as_of=AS_OF,
        emit=lambda c: None,
        stats=ReplayStats(),
    )


@pytest.fixture
def env(redis_url, monkeypatch):
    namespace = f"kpi{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("TIERSTREAM_REDIS_URL", redis_url)
    monkeypatch.setenv("TIERSTREAM_REDIS_NAMESPACE", namespace)
    monkeypatch.setenv("TIERSTREAM_PARTITIONS", str(PARTITIONS))
    store = RedisStore(redis_url, partitions=PARTITIONS, namespace=namespace)
    store.wipe()
    yield store
    store.wipe()
    store.close()


def test_clv_fit_on_too_little_data_says_so_and_publishes_nothing(env, replayed):
    few = [replayed.states[cid] for cid in sorted(replayed.states)[:40]]
    commit_states(env, few)
    result = CliRunner().invoke(app, ["clv", "fit", "--as-of", "1998-07-01"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "not enough data" in lines[0] and "nothing published" in lines[0]
    assert "40 customers" in lines[0]
    assert env.get_meta(CLV_META) is None


def test_clv_kpis_and_review_through_redis(env, replayed, kafka_bootstrap, tmp_path):
    commit_states(env, replayed.states.values())
    runner = CliRunner()
    fitted = runner.invoke(app, ["clv", "fit", "--as-of", "1998-07-01"])
    assert fitted.exit_code == 0, fitted.output
    snapshot = ClvSnapshot.from_bytes(env.get_meta(CLV_META))
    assert snapshot.version == 1 and json.loads(fitted.stdout)["version"] == 1
    refit = runner.invoke(app, ["clv", "fit", "--as-of", "1998-07-01", "--no-publish"])
    assert refit.exit_code == 0 and json.loads(refit.stdout)["version"] == 2
    assert ClvSnapshot.from_bytes(env.get_meta(CLV_META)).version == 1  # not published

    day = utc_day(AS_OF)
    some = sorted(replayed.states)[::500]
    # customer and export: the state record carries p_alive and clv_12m.
    for customer_id in some[:3]:
        shown = runner.invoke(app, ["customer", customer_id, "--json", "--as-of", "1998-07-01"])
        assert shown.exit_code == 0, shown.output
        one = json.loads(shown.stdout)
        want = snapshot.values(replayed.states[customer_id], day)
        assert one["p_alive"] == round(want.p_alive, 6)
        assert one["clv_12m"] == round(want.clv, 2)
        assert one["clv_model_version"] == 1
    out = tmp_path / "state.jsonl"
    exported = runner.invoke(app, ["export", "--state-out", str(out), "--as-of", "1998-07-01"])
    assert exported.exit_code == 0, exported.output
    records = {r["customer_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    for customer_id in some:
        want = snapshot.values(replayed.states[customer_id], day)
        assert records[customer_id]["p_alive"] == round(want.p_alive, 6)
        assert records[customer_id]["clv_12m"] == round(want.clv, 2)

    # The API: the lookup and GET /kpis.
    settings = Settings(kafka_bootstrap=kafka_bootstrap, partitions=PARTITIONS, clock="event")
    scorer = replayed.scorer
    expected_people = population(scorer, replayed.states.values(), AS_OF, clv=snapshot)
    with Served(create_api(env, scorer, settings)) as served:
        client = Client(served.port)
        try:
            status, body = client.customer(some[1])
            assert status == 200
            want = snapshot.values(replayed.states[some[1]], day)
            assert body["p_alive"] == round(want.p_alive, 6)
            assert body["clv_12m"] == round(want.clv, 2)
            for by in ("tier", "segment", "behaviour"):
                status, got, _ = client.get(f"/kpis?by={by}&as_of=1998-07-01")
                assert status == 200, got
                assert_valid("Kpis", got)
                want_table = kpi_table(scorer, expected_people, by)
                assert got["groups"] == want_table["groups"]
                assert got["all"] == want_table["all"]
                assert got["clv_model_version"] == 1
            status, got, _ = client.get("/kpis?by=account")
            assert status == 400 and "tier, segment, behaviour" in got["error"]
        finally:
            client.close()

    # The report from the Redis state, with the published lifetime value model.
    report = tmp_path / "report.html"
    made = runner.invoke(app, ["report", "--out", str(report), "--as-of", "1998-07-01"])
    assert made.exit_code == 0, made.output
    html = report.read_text()
    assert "lifetime value model v1" in html and html.count("data:image/png;base64,") == 2

    # The review: the first says so; the second compares with it.
    first = runner.invoke(app, ["review", "--as-of", "1998-07-01", "--json"])
    assert first.exit_code == 0, first.output
    one = json.loads(first.stdout)
    assert one["first"] is True and one["compared_with"] is None
    segment_rows = {g["group"]: g for g in one["dimensions"]["segment"]["groups"]}
    assert sum(g["customers"] for g in segment_rows.values()) == len(replayed.states)
    printed = runner.invoke(app, ["review", "--as-of", "1998-07-02"])
    assert printed.exit_code == 0, printed.output
    assert "compared with review 1" in printed.stdout
    reviews = json.loads(env.get_meta(REVIEWS_META))
    assert [r["review_id"] for r in reviews] == [1, 2]
    assert reviews[1]["compared_with"]["review_id"] == 1
    assert reviews[1]["dimensions"]["segment"]["flows_source"] == "store flow totals"
    since = runner.invoke(
        app, ["review", "--as-of", "1998-07-03", "--since", "1998-07-01", "--json"]
    )
    assert json.loads(since.stdout)["compared_with"]["review_id"] == 1
