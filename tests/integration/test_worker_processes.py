"""The worker as an operator runs it: several processes per machine, and an error it cannot
judge safe to skip stopping the shard and the process instead of skipping."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request

import pytest

from tests.integration.api_support import free_port
from tests.integration.pipeline import assert_applied_exactly_once, subset
from tierstream.stores import shard_for

pytestmark = pytest.mark.integration


def test_two_processes_divide_the_partitions_and_match_the_reference(
    make_pipeline, cdnow_events, cdnow_frame
):
    events = subset(cdnow_events, "03000")
    pipeline = make_pipeline()
    pipeline.produce(events)
    supervisor = pipeline.start_worker("--processes", "2")
    assert_applied_exactly_once(pipeline, cdnow_frame, events)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=60) == 0


def _health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_corrupt_record_stops_the_shard_and_the_process_instead_of_skipping(
    make_pipeline, cdnow_events, cdnow_frame
):
    events = subset(cdnow_events, "01000")
    first, rest = events[:-40], events[-40:]
    pipeline = make_pipeline()
    pipeline.produce(first)
    port = free_port()
    worker = pipeline.start_worker(env={"TIERSTREAM_API_PORT": str(port)})
    pipeline.wait_applied(1.0)
    victim = rest[0].customer_id
    shard = shard_for(victim, pipeline.partitions)
    # A stored record nobody can read: applying the victim's next event must not be skipped.
    key = pipeline.store.state_key(shard, victim)
    good = pipeline.store._client.get(key)
    pipeline.store._client.set(key, b"{not json")
    before = pipeline.store.offsets(shard)
    pipeline.produce(rest)
    stopped = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and worker.poll() is None:
        try:
            status, body = _health(port)
        except OSError:
            status, body = 0, {}
        if status == 503 and body.get("status") == "stopped":
            stopped = body
        time.sleep(0.2)
    assert worker.wait(timeout=60) == 70, pipeline.logs()
    pipeline.workers.remove(worker)  # it exited as designed
    assert stopped is not None, "healthz never said the shard stopped"
    assert str(shard) in stopped["stopped_shards"]
    assert "JSONDecodeError" in stopped["stopped_shards"][str(shard)]
    # Nothing of the shard's batch with the victim's event was applied...
    assert pipeline.store.offsets(shard) == before
    # ...so once the record is repaired (restored from a backup, say), a new worker applies
    # the rest, exactly once.
    pipeline.store._client.set(key, good if good is not None else b'{"v":0}')
    pipeline.start_worker()
    assert_applied_exactly_once(pipeline, cdnow_frame, events)
