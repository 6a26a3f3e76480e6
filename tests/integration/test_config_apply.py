"""`tierstream config apply` on running workers, through real Kafka and Redis.

A new version is adopted within the check interval and every customer is re-scored
(cause ``config_update``): each ends in the tier the new rules give their scores, and the
change chains hold. An invalid config is refused with the reason and publishes nothing.
A sweep cut by kill -9 is finished by the next worker, which (started with another local
file) says so and scores with the published version.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from scoring.config import ScoringConfig
from tests.integration.api_support import Client, Served
from tests.integration.pipeline import (
    ROOT,
    Pipeline,
    assert_chains_consistent,
    assert_totals_exact,
    subset,
)
from tierstream.api import create_api
from tierstream.config_versions import published
from tierstream.settings import DEFAULT_CONFIG, Settings, load_scoring_config

# Adoption within the default check interval (5 s), and the small sweep, in this bound.
ADOPTED_WITHIN = 10.0


def new_rules(tmp_path: Path) -> Path:
    """M weighs more and the VIP bar is lower: many customers change tier, none segment."""
    weights = '{r: "0.35", f: "0.25", m: "0.30", e: "0.10"}'
    vip = "VIP: {response_time: same day"
    text = (
        DEFAULT_CONFIG.read_text()
        .replace(weights, '{r: "0.20", f: "0.20", m: "0.50", e: "0.10"}')
        .replace('{name: VIP, min_score: "4.2"}', '{name: VIP, min_score: "3.8"}')
        .replace(vip, "VIP: {response_time: within 2 hours")
    )
    assert weights not in text and vip not in text
    path = tmp_path / "new-rules.yaml"
    path.write_text(text)
    return path


def cli(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tierstream.cli", "config", *args],
        cwd=ROOT,
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def pipeline_settings(pipeline: Pipeline) -> Settings:
    return Settings(
        kafka_bootstrap=pipeline.bootstrap,
        partitions=pipeline.partitions,
        redis_namespace=pipeline.namespace,
        clock="event",
    )


def expected_tier(config: ScoringConfig, scores: Any) -> str:
    """The weighted plan, computed here from the config's numbers (not by the scorer)."""
    weights = config.tiers.weights
    total = sum(
        (weights.get(k, Decimal(0)) * getattr(scores, k) for k in ("r", "f", "m", "e")),
        Decimal(0),
    )
    return next(level.name for level in config.tiers.levels if total >= level.min_score)


def wait_swept(pipeline: Pipeline, version: int, timeout: float) -> float:
    started = time.monotonic()
    want = str(version).encode()
    while any(
        pipeline.store.get_meta(f"config_swept:{shard}") != want
        for shard in range(pipeline.partitions)
    ):
        assert time.monotonic() - started < timeout, f"shards not swept\n{pipeline.logs()}"
        time.sleep(0.2)
    return time.monotonic() - started


def test_apply_retiers_every_customer_on_running_workers(make_pipeline, cdnow_events, tmp_path):
    pipeline = make_pipeline()
    events = subset(cdnow_events, "01500")
    pipeline.produce(events)
    workers = [pipeline.start_worker(), pipeline.start_worker()]
    pipeline.wait_applied(1.0)
    pipeline.wait_quiet()
    before = {s.customer_id: (s.tier, s.segment) for s in pipeline.store.scan()}

    rules = new_rules(tmp_path)
    # What-if on the live state first. Its as-of lies before every state's clock, so each
    # customer is re-scored at its own clock day, as the workers' sweep (all timers fired).
    proposal = cli(pipeline, "propose", str(rules), "--live", "--as-of", "1997-01-01", "--json",
                   "--changes-out", str(tmp_path / "moves.jsonl"))  # fmt: skip
    assert proposal.returncode == 0, proposal.stderr
    predicted = json.loads(proposal.stdout)

    api = create_api(pipeline.store, pipeline.scorer, pipeline_settings(pipeline))
    applied = cli(pipeline, "apply", str(rules))
    assert applied.returncode == 0, applied.stderr
    assert "version 1" in applied.stdout
    elapsed = wait_swept(pipeline, 1, timeout=60)
    assert elapsed < ADOPTED_WITHIN, f"swept after {elapsed:.1f}s"
    pipeline.wait_quiet()
    assert all(worker.poll() is None for worker in workers)

    config = load_scoring_config(rules)
    states = list(pipeline.store.scan())
    assert len(states) == len(before) == len({e.customer_id for e in events})
    moved = 0
    for state in states:
        assert state.scores is not None
        assert state.tier == expected_tier(config, state.scores), state.customer_id
        assert state.segment == before[state.customer_id][1]  # segment rules unchanged
        moved += state.tier != before[state.customer_id][0]
    assert moved > 50  # the new rules move customers: the test has teeth
    after = Counter(s.tier for s in states)
    assert predicted["customers"] == len(states)
    assert predicted["tier_changes"] == moved
    columns: Counter[str] = Counter()
    for row in predicted["tiers"]["from_to"].values():
        columns.update(row)
    assert +columns == after
    moves = [json.loads(line) for line in (tmp_path / "moves.jsonl").read_text().splitlines()]
    assert {m["customer_id"]: m["tier_after"] for m in moves} == {
        s.customer_id: s.tier for s in states if s.tier != before[s.customer_id][0]
    }

    # The lookup API serves the published version's service levels (its own local config
    # is the packaged default, where a VIP is answered the same day).
    vip = next(s.customer_id for s in states if s.tier == "VIP")
    with Served(api) as served:
        status, body, _ = Client(served.port).get(f"/customers/{vip}/tier")
    assert status == 200 and body["is_vip"], body
    assert body["service_level"]["response_time"] == "within 2 hours", body

    changes = pipeline.changes()
    updates = {c["event_id"]: c for c in changes if c["cause"] == "config_update"}
    assert len(updates) == moved  # one change per customer whose tier moved, no more
    assert all("scoring config version 1" in c["reason"] for c in updates.values())
    assert_chains_consistent(changes, pipeline.store)
    assert_totals_exact(pipeline, len(events), changes)

    shown = cli(pipeline, "show")
    assert shown.returncode == 0 and shown.stdout.startswith("version 1,"), shown
    again = cli(pipeline, "apply", str(rules))
    assert again.returncode == 2 and "nothing to apply" in again.stderr
    # Roll back: the previous rules again, as version 2; everyone returns to their tier.
    back = cli(pipeline, "apply", str(DEFAULT_CONFIG))
    assert back.returncode == 0, back.stderr
    wait_swept(pipeline, 2, timeout=60)
    pipeline.wait_quiet()
    assert {s.customer_id: (s.tier, s.segment) for s in pipeline.store.scan()} == before
    assert_chains_consistent(pipeline.changes(), pipeline.store)


def test_an_invalid_config_is_refused_with_the_reason(make_pipeline, tmp_path):
    pipeline = make_pipeline()
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        DEFAULT_CONFIG.read_text()
        .replace('{name: VIP, min_score: "4.2"}', '{name: VIP, min_score: "2.0"}')
        .replace("window_days: 365", "window_days: 0")
    )
    for command in ("validate", "apply"):
        result = cli(pipeline, command, str(bad))
        assert result.returncode == 2, (command, result)
        assert "2 problems" in result.stderr, (command, result.stderr)
        assert "window_days" in result.stderr and "highest min_score down" in result.stderr
        assert "Traceback" not in result.stderr
    assert published(pipeline.store) is None  # nothing published
    shown = cli(pipeline, "show")
    assert shown.returncode == 0 and "no version published" in shown.stdout


def test_a_sweep_cut_by_kill_9_is_finished_by_the_next_owner(make_pipeline, cdnow_events, tmp_path):
    pipeline = make_pipeline()
    events = subset(cdnow_events, "06000")
    pipeline.produce(events)
    first = pipeline.start_worker()
    pipeline.wait_applied(1.0)
    pipeline.wait_quiet()
    before = {s.customer_id: s.tier for s in pipeline.store.scan()}

    assert cli(pipeline, "apply", str(new_rules(tmp_path))).returncode == 0
    deadline = time.monotonic() + 30
    markers = [f"config_swept:{shard}" for shard in range(pipeline.partitions)]
    while not pipeline.store.tallies().get("change:config_update"):
        assert time.monotonic() < deadline, f"no sweep started\n{pipeline.logs()}"
        time.sleep(0.02)
    pipeline.kill(first)  # SIGKILL, in the middle of the sweep
    unswept = [m for m in markers if pipeline.store.get_meta(m) != b"1"]
    assert unswept, "the sweep finished before the kill: nothing left to resume"

    pipeline.start_worker()  # its local config, the packaged default, is not in force
    wait_swept(pipeline, 1, timeout=120)
    pipeline.wait_quiet()
    assert "differs from the published version 1" in pipeline.logs()
    config = load_scoring_config(new_rules(tmp_path))
    states = list(pipeline.store.scan())
    assert len(states) == len(before)
    for state in states:
        assert state.scores is not None
        assert state.tier == expected_tier(config, state.scores), state.customer_id
    changes = pipeline.changes()
    updates = {c["event_id"] for c in changes if c["cause"] == "config_update"}
    assert len(updates) == sum(s.tier != before[s.customer_id] for s in states)
    assert_chains_consistent(changes, pipeline.store)
    assert_totals_exact(pipeline, len(events), changes)
