"""Backfill into Redis: exact after a kill -9 and a resume, and the worker goes on from it.

CDNOW subsets (the point is the path, not the scale): the customers' states must equal a
replay of the same events, and events that reach the worker again through Kafka count once.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from scoring.engine import Scorer
from streams.producer import event_json
from tests.accounts.reference import with_accounts
from tests.integration.pipeline import AS_OF, ROOT, assert_audiences_exact, assert_exact
from tests.integration.test_accounts_worker import (
    account_store,
    assert_accounts_equal_reference,
    assert_settled_accounts_exact,
)
from tierstream.accounts import ACCOUNTS_NAMESPACE_SUFFIX, AccountBook
from tierstream.backfill import CHECKPOINT_PREFIX
from tierstream.replay import ReplayStats, replay
from tierstream.settings import load_scoring_config
from tierstream.stores.redis import RedisStore

PARTITIONS = 4


def write_jsonl(path: Path, events) -> Path:
    path.write_bytes(b"".join(event_json(e) + b"\n" for e in events))
    return path


def backfill(env: dict[str, str], path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # our own CLI
        [sys.executable, "-m", "tierstream.cli", "backfill", str(path), "--quiet", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(process: subprocess.Popen[str]) -> dict:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def checkpoints(store: RedisStore) -> int:
    return sum(
        offset
        for shard in range(store.partitions)
        for topic, offset in store.offsets(shard).items()
        if topic.startswith(CHECKPOINT_PREFIX)
    )


@pytest.fixture
def store(redis_url):
    store = RedisStore(redis_url, partitions=PARTITIONS, namespace=f"b{uuid.uuid4().hex[:12]}")
    accounts = RedisStore(
        redis_url, partitions=PARTITIONS, namespace=store.namespace + ACCOUNTS_NAMESPACE_SUFFIX
    )
    store.wipe()
    yield store
    for each in (store, accounts):
        each.wipe()
        each.close()


def env_for(store: RedisStore, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "TIERSTREAM_REDIS_URL": store.url,
        "TIERSTREAM_REDIS_NAMESPACE": store.namespace,
        "TIERSTREAM_PARTITIONS": str(store.partitions),
        **extra,
    }


def test_backfill_resumes_after_kill_9_and_equals_a_replay(
    store, cdnow_events, cdnow_frame, tmp_path
):
    # With accounts: the backfill applies their updates through the account step's commit.
    events = with_accounts([e for e in cdnow_events if e.customer_id < "06000"])
    # File in customer order, as CDNOW ships: the backfill has to sort it by time.
    path = write_jsonl(tmp_path / "history.jsonl", sorted(events, key=lambda e: e.customer_id))
    env = env_for(store)
    first = backfill(env, path)
    deadline = time.monotonic() + 120
    while checkpoints(store) == 0:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    applied_before = store.tallies().get("applied", 0)
    assert 0 < applied_before < len(events), "the kill did not land mid-way"

    summary = finished(backfill(env, path))
    assert summary["already_backfilled"] > 0
    assert summary["already_backfilled"] + summary["applied"] == len(events)
    assert store.tallies()["applied"] == len(events)  # each event exactly once

    scorer = Scorer(load_scoring_config(None))
    book = AccountBook(scorer.config, emit=lambda c: None)  # the contacts' account links
    replayed = replay(
        list(events), scorer, as_of=AS_OF, emit=lambda c: None, stats=ReplayStats(), accounts=book
    )
    stored = {state.customer_id: state for state in store.scan()}
    assert set(stored) == set(replayed.states)
    different = []
    for customer_id, expected in replayed.states.items():
        state = stored[customer_id]
        scorer.advance(state, AS_OF)  # the replay brought everyone to the as-of day
        if state.to_dict() != expected.to_dict():
            different.append((customer_id, state.to_dict(), expected.to_dict()))
    assert different == [], f"{len(different)} states differ, e.g. {different[:1]}"
    assert_audiences_exact(store)  # the shared commit path keeps the sets across kill -9
    accounts = RedisStore(
        store.url, partitions=PARTITIONS, namespace=store.namespace + ACCOUNTS_NAMESPACE_SUFFIX
    )
    try:  # every account exact across the kill too (updates applied once, by seq)
        frame = cdnow_frame[cdnow_frame["customer_id"] < "06000"]
        assert_accounts_equal_reference(accounts, Scorer(load_scoring_config(None)), frame)
        assert not any(accounts.outbox(shard, 1) for shard in range(PARTITIONS))
    finally:
        accounts.close()
    # A third run finds everything done.
    again = finished(backfill(env, path))
    assert again["already_backfilled"] == len(events) and again["applied"] == 0


def test_worker_goes_on_from_a_backfill_and_overlapping_events_count_once(
    make_pipeline, cdnow_events, cdnow_frame, tmp_path
):
    # In time order, with accounts: backfilled contributions, then live ones through Kafka.
    events = with_accounts([e for e in cdnow_events if e.customer_id < "03000"])
    cut_low, cut_high = int(len(events) * 0.4), int(len(events) * 0.6)
    backfilled, through_kafka = events[:cut_high], events[cut_low:]
    pipeline = make_pipeline(partitions=PARTITIONS)
    path = tmp_path / "history.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(event_json(e) + b"\n" for e in backfilled)))
    summary = finished(backfill(pipeline.env, path))  # format from the name, gzip inside
    assert summary["applied"] == len(backfilled)

    pipeline.start_worker()
    pipeline.produce(through_kafka)
    pipeline.wait_applied(1.0)
    pipeline.wait_quiet()
    tallies = pipeline.store.tallies()
    assert tallies["applied"] == len(events), tallies  # the overlap counted once
    outcomes = sum(tallies.get(k, 0) for k in ("applied", "duplicate", "outside_window"))
    assert outcomes == len(backfilled) + len(through_kafka)
    assert tallies.get("duplicate", 0) > 0
    assert_exact(pipeline, cdnow_frame, {e.customer_id for e in events})
    accounts = account_store(pipeline)
    try:
        assert summary["account_updates"] > 0
        assert_settled_accounts_exact(pipeline, accounts, cdnow_frame, "03000")
    finally:
        accounts.wipe()
        accounts.close()


@pytest.mark.parametrize("name", ["h.csv", "h.csv.gz", "h.parquet", "h.parquet.gz", "h.jsonl"])
def test_backfill_reads_every_format(store, cdnow_events, tmp_path, name):
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    events = [e for e in cdnow_events if e.customer_id < "00300"]
    rows = [json.loads(event_json(e)) for e in events]
    columns = ["event_id", "customer_id", "occurred_at", "amount", "currency", "kind"]
    plain = tmp_path / name.removesuffix(".gz")
    if plain.suffix == ".csv":
        lines = [",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns) for r in rows]
        plain.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif plain.suffix == ".parquet":
        pq.write_table(pa.table({c: [r.get(c) for r in rows] for c in columns}), plain)
    else:
        write_jsonl(plain, events)
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(plain.read_bytes()))
    summary = finished(backfill(env_for(store), path))
    assert summary["applied"] == len(events) and summary["rejected"] == 0
    scorer = Scorer(load_scoring_config(None))
    replayed = replay(list(events), scorer, as_of=AS_OF, emit=lambda c: None, stats=ReplayStats())
    for state in store.scan():
        scorer.advance(state, AS_OF)
        assert state.to_dict() == replayed.states[state.customer_id].to_dict()
