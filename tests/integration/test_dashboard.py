"""The dashboard in a real browser: Debian's chromium driven by playwright.

Every CDNOW customer is committed to Redis, the API serves the page, and the test checks
that each chart is drawn from the data, that the page follows new commits (sizes, flows,
rates, a newly published segment model) without a reload, and that a token set on the
API is asked for and used. It saves a screenshot to out/dashboard.png, and to
docs/img/dashboard.png when that is missing or TIERSTREAM_UPDATE_SCREENSHOTS=1 (so that a
plain test run leaves the tracked image alone).

Needs `pip install playwright` (the Python package only: the browser is Debian's
`chromium`, never one downloaded by `playwright install`); skipped, saying so, without them.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from scoring.engine import Change, change_event_id
from scoring.state import CustomerState
from tests.cdnow import cdnow_history
from tests.integration.api_support import AS_OF, Served, cdnow, commit_states
from tierstream.api import create_api
from tierstream.settings import Settings
from tierstream.stores import Batch, record_changes
from tierstream.stores.redis import RedisStore

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "out" / "dashboard.png"
DOCS_SCREENSHOT = ROOT / "docs" / "img" / "dashboard.png"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PARTITIONS = 4


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    return path


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="the playwright Python package is not installed (pip install playwright)",
    )
    executable = chromium_path()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def store(redis_url):
    replayed = cdnow()
    store = RedisStore(redis_url, partitions=PARTITIONS, namespace=f"dash{uuid.uuid4().hex[:8]}")
    store.wipe()
    commit_states(store, replayed.states.values(), replayed.changes, {"applied": 69_659})
    yield store
    store.wipe()
    store.close()


def newcomers(start: int, count: int) -> tuple[list[CustomerState], list[Change]]:
    """Customers placed by a first purchase (C) who moved on to B, as a worker commits them."""
    states, changes = [], []
    for n in range(start, start + count):
        customer_id = f"web-{n:05d}"
        state = CustomerState(customer_id, tier="B", segment="New", version=2)
        states.append(state)
        for version, (previous, new) in enumerate([(None, "C"), ("C", "B")], start=1):
            changes.append(
                Change(
                    event_id=change_event_id(customer_id, version),
                    customer_id=customer_id,
                    version=version,
                    previous_tier=previous,
                    new_tier=new,
                    previous_segment=None if previous is None else "New",
                    new_segment="New",
                    cause="purchase",
                    reason="test",
                    recency_days=0,
                    frequency=1,
                    monetary=Decimal(0),
                    r=5,
                    f=1,
                    m=1,
                    occurred_at=AS_OF,
                )
            )
    return states, changes


def dead_letters(store: RedisStore, count: int) -> None:
    shard = 0
    batch = Batch()
    record_changes(batch, [], {"dead_letter:bad_json": count, "applied": 10})
    store.commit(store.acquire(shard), batch)


def wait_for(page, expression: str, timeout: float = 20) -> None:
    page.wait_for_function(expression, timeout=timeout * 1000)


def test_dashboard_draws_the_data_and_follows_new_commits(browser, store, kafka_bootstrap):
    from tierstream.behaviours import SNAPSHOT_META, learn_snapshot

    replayed = cdnow()
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, partitions=PARTITIONS, clock="event", sizes_ttl=1.0
    )
    with Served(create_api(store, replayed.scorer, settings)) as server:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.url + "/")
        wait_for(page, "Number(document.body.dataset.refreshes) >= 2")

        # Sizes: one bar per configured tier and segment, adding up to every customer.
        tier_bars = page.locator("#tiers svg rect.bar")
        assert tier_bars.count() == 4
        values = [int(tier_bars.nth(i).get_attribute("data-value")) for i in range(4)]
        assert sum(values) == 23_570 and min(values) > 0
        assert page.locator("#segments svg rect.bar").count() == 11
        assert page.locator("#customers-total").inner_text() == "23.6k customers"
        # Flows: the from -> to matrix has the CDNOW moves (none -> B, B -> C, ...).
        assert page.locator('#flows rect.flow[data-from="none"][data-to="B"]').count() == 1
        assert page.locator("#flows rect.flow").count() >= 8
        assert page.locator("#redis-dot.ok").count() == 1
        assert page.locator("#kafka-dot.ok").count() == 1
        assert "no model yet" in page.locator("#model").inner_text()
        changes_before = int(page.evaluate("document.body.dataset.changes"))
        assert changes_before == len(replayed.changes)

        # New commits while the page is open: customers, changes, dead letters, a model.
        learned = learn_snapshot(replayed.scorer, replayed.states.values(), AS_OF, k=5)
        store.set_meta(SNAPSHOT_META, learned.snapshot.to_bytes())
        added = 0
        for round_ in range(8):  # about 8 s of activity, so the rate charts have a shape
            states, changes = newcomers(added, 40 + 30 * round_)
            commit_states(store, states, changes)
            added += len(states)
            dead_letters(store, 1 + round_ % 3)
            time.sleep(1.0)
        total = 23_570 + added
        wait_for(page, f"Number(document.body.dataset.customers) === {total}")
        wait_for(page, f"Number(document.body.dataset.changes) === {changes_before + 2 * added}")
        features = len(learned.snapshot.feature_names)
        wait_for(
            page, f"document.querySelectorAll('#model table.heat tbody tr').length === {features}"
        )
        assert page.locator("#model table.heat thead th").count() == 1 + 5  # one per behaviour
        rates = page.evaluate("samples.slice(1).map((s, i) => s.changes - samples[i].changes)")
        assert max(rates) > 0, "the change rate never moved"
        dead = page.evaluate("samples.slice(1).map((s, i) => s.dead - samples[i].dead)")
        assert sum(dead) > 0
        assert page.locator("#rates path.rate").count() == 1
        assert page.locator("#dead path.rate").count() == 1
        assert "now" in page.locator("#rate-now").inner_text()

        # A support lookup from the page.
        page.fill("#lookup-id", "00001")
        page.click("#lookup-form button")
        wait_for(page, "document.querySelector('#lookup-out').textContent.includes('why:')")
        assert "00001: tier" in page.locator("#lookup-out").inner_text()
        assert "expected 12-month value" in page.locator("#lookup-out").inner_text()

        # KPIs: a row per tier and the row of all; the grouping can be switched.
        wait_for(page, "document.querySelectorAll('#kpis table.kpi tbody tr').length === 5")
        page.select_option("#kpis-by", "segment")
        wait_for(page, "document.body.dataset.kpis === 'segment'")
        assert page.locator("#kpis table.kpi tbody tr").count() >= 9

        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        if os.environ.get("TIERSTREAM_UPDATE_SCREENSHOTS") or not DOCS_SCREENSHOT.exists():
            shutil.copyfile(SCREENSHOT, DOCS_SCREENSHOT)
        assert errors == []
        page.close()


def test_dashboard_asks_for_the_token_and_uses_it(browser, store, kafka_bootstrap):
    replayed = cdnow()
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, partitions=PARTITIONS, clock="event", api_token="t0k"
    )
    with Served(create_api(store, replayed.scorer, settings)) as server:
        page = browser.new_page()
        page.goto(server.url + "/")
        page.locator("#login.show").wait_for(timeout=10_000)
        assert page.locator("#tiers svg").count() == 0
        page.fill("#login-token", "t0k")
        page.click("#login-form button")
        page.locator("#tiers svg rect.bar").first.wait_for(timeout=10_000)
        page.close()
        # A link with the token in its fragment (never sent to the server) works too.
        page = browser.new_page()
        page.goto(server.url + "/#token=t0k")
        page.locator("#tiers svg rect.bar").first.wait_for(timeout=10_000)
        assert "token" not in page.url
        page.close()


def test_dashboard_of_a_running_worker_fed_with_cdnow_follows_new_events(
    browser, kafka_bootstrap, redis_url, fresh_topics, unique_name, tmp_path
):
    """End to end: CDNOW through Kafka into a worker that serves the page itself."""
    from tests.integration.api_support import free_port
    from tests.integration.pipeline import Pipeline

    events = list(cdnow_history())
    events.sort(key=lambda e: e.occurred_at)
    first = [e for e in events if e.customer_id < "02000"]
    later = [e for e in events if "02000" <= e.customer_id < "02500"]
    port = free_port()
    pipeline = Pipeline(
        kafka_bootstrap,
        redis_url,
        fresh_topics,
        unique_name,
        tmp_path,
        env={"TIERSTREAM_API_PORT": str(port), "TIERSTREAM_SIZES_TTL": "1"},
    )
    try:
        pipeline.produce(first)
        pipeline.start_worker()
        pipeline.wait_applied(1.0)
        pipeline.wait_quiet()
        customers = len({e.customer_id for e in first})
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        deadline = time.monotonic() + 30
        while True:  # the worker's API comes up with the worker
            try:
                page.goto(f"http://127.0.0.1:{port}/")
                break
            except Exception:  # noqa: BLE001 - playwright raises its own error types
                assert time.monotonic() < deadline, "the worker never served the page"
                time.sleep(0.5)
        wait_for(page, f"Number(document.body.dataset.customers) === {customers}")
        published = len(pipeline.changes())
        wait_for(page, f"Number(document.body.dataset.changes) === {published}")
        bars = page.locator("#tiers svg rect.bar")
        assert sum(int(bars.nth(i).get_attribute("data-value")) for i in range(4)) == customers
        assert page.locator("#flows rect.flow").count() >= 4
        assert page.locator("#kafka-dot.ok").count() == 1
        changes_before = published

        # New purchases arrive: the open page follows without a reload.
        pipeline.produce(later)
        total = customers + len({e.customer_id for e in later})
        wait_for(page, f"Number(document.body.dataset.customers) === {total}", timeout=60)
        wait_for(page, f"Number(document.body.dataset.changes) > {changes_before}", timeout=60)
        assert errors == []
        page.close()
    finally:
        pipeline.stop_all()
        pipeline.store.wipe()
        pipeline.store.close()
