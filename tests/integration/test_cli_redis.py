"""The Redis-reading commands: segments, export, customer (real Redis)."""

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
from tierstream.stores import Batch
from tierstream.stores.redis import RedisStore

AS_OF = datetime(1998, 7, 1, tzinfo=UTC)


def test_segments_export_and_customer_read_the_shared_state(redis_url, tmp_path, monkeypatch):
    namespace = f"cli{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("TIERSTREAM_REDIS_URL", redis_url)
    monkeypatch.setenv("TIERSTREAM_REDIS_NAMESPACE", namespace)
    monkeypatch.setenv("TIERSTREAM_PARTITIONS", "4")
    events = [e for e in cdnow_history() if e.customer_id < "03000"]
    result = replay(
        events,
        Scorer(load_scoring_config(None)),
        as_of=AS_OF,
        emit=lambda c: None,
        stats=ReplayStats(),
    )
    store = RedisStore(redis_url, partitions=4, namespace=namespace)
    try:
        store.commit(store.acquire(0), Batch(states=list(result.states.values())))
        runner = CliRunner()
        learned = runner.invoke(app, ["segments", "--as-of", "1998-07-01", "--json"])
        assert learned.exit_code == 0, learned.output
        segments = json.loads(learned.stdout)
        assert segments["version"] == 1 and len(segments["segments"]) == 5
        assert sum(s["customers"] for s in segments["segments"]) == len(result.states)

        out = tmp_path / "state.jsonl"
        exported = runner.invoke(app, ["export", "--state-out", str(out), "--as-of", "1998-07-01"])
        assert exported.exit_code == 0, exported.output
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(records) == len(result.states)
        by_id = {r["customer_id"]: r for r in records}
        expected = result.scorer.record(result.states["00001"])
        assert {k: by_id["00001"][k] for k in expected} == expected
        assert by_id["00001"]["behaviour"]["model_version"] == 1

        shown = runner.invoke(app, ["customer", "00001", "--json", "--as-of", "1998-07-01"])
        assert shown.exit_code == 0, shown.output
        one = json.loads(shown.stdout)
        assert one["customer_id"] == "00001" and "weighted score" in one["why"]
        assert one["behaviour"]["label"] == by_id["00001"]["behaviour"]["label"]

        missing = runner.invoke(app, ["customer", "no-such-customer"])
        assert missing.exit_code == 1
    finally:
        store.wipe()
        store.close()
