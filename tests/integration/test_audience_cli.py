"""``tierstream audience``: rebuild a store written without sets, check, export (real Redis)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from typer.testing import CliRunner

from scoring.engine import Scorer
from tests.cdnow import cdnow_history
from tierstream.cli import app
from tierstream.replay import ReplayStats, replay
from tierstream.settings import load_scoring_config
from tierstream.stores import Batch, shard_for
from tierstream.stores.redis import RedisStore

AS_OF = datetime(1998, 7, 1, tzinfo=UTC)


def test_rebuild_then_export_a_tier_and_a_segment(redis_url, tmp_path, monkeypatch):
    namespace = f"aud{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("TIERSTREAM_REDIS_URL", redis_url)
    monkeypatch.setenv("TIERSTREAM_REDIS_NAMESPACE", namespace)
    monkeypatch.setenv("TIERSTREAM_PARTITIONS", "4")
    events = [e for e in cdnow_history() if e.customer_id < "01000"]
    scorer = Scorer(load_scoring_config(None))
    result = replay(events, scorer, as_of=AS_OF, emit=lambda c: None, stats=ReplayStats())
    store = RedisStore(redis_url, partitions=4, namespace=namespace)
    runner = CliRunner()
    try:
        # Written as a store of an older version: states without membership sets.
        for shard in range(4):
            states = [s for s in result.states.values() if shard_for(s.customer_id, 4) == shard]
            store.commit(store.acquire(shard), Batch(states=states))
        checked = runner.invoke(app, ["audience", "--check"])
        assert checked.exit_code == 1, checked.output
        rebuilt = runner.invoke(app, ["audience", "--rebuild", "--check"])
        assert rebuilt.exit_code == 0, rebuilt.output
        assert json.loads(rebuilt.stdout.splitlines()[0])["customers"] == len(result.states)

        tier = scorer.config.tiers.levels[0].name
        out = tmp_path / "tier.jsonl"
        exported = runner.invoke(app, ["audience", tier, "--out", str(out)])
        assert exported.exit_code == 0, exported.output
        ids = [json.loads(line)["customer_id"] for line in out.read_text().splitlines()]
        expected = sorted(c for c, s in result.states.items() if s.tier == tier)
        assert ids == expected and json.loads(exported.stdout)["size"] == len(expected)

        segment = next(s.segment for s in result.states.values() if s.segment is not None)
        out = tmp_path / "segment.jsonl"
        exported = runner.invoke(app, ["audience", segment, "--out", str(out)])
        assert exported.exit_code == 0, exported.output
        assert json.loads(exported.stdout)["kind"] == "segment"
        ids = [json.loads(line)["customer_id"] for line in out.read_text().splitlines()]
        assert ids == sorted(c for c, s in result.states.items() if s.segment == segment)

        unknown = runner.invoke(app, ["audience", "NoSuchTier", "--out", str(out)])
        assert unknown.exit_code == 2 and "Traceback" not in unknown.output
        assert len(unknown.output.strip().splitlines()) == 1
    finally:
        store.wipe()
        store.close()
