"""A Redis that loses acknowledged commits under a running worker (a failover to a replica
that missed the last writes, a restart without them): the worker reads those messages
from Kafka again instead of carrying on over the gap (streams/rollback.py).

The harshest form, deterministic: a private Redis without persistence is killed and
started empty on the same port between two halves of the input, so every shard rolls
back to nothing. On its next step the worker finds the shard behind what it committed,
seeks back to offset 0 and applies the first half again before the second.
"""

from __future__ import annotations

import subprocess
import time

from bench.infra import PrivateRedis
from tests.integration.pipeline import Pipeline, assert_exact, subset


def restart_empty(redis: PrivateRedis) -> subprocess.Popen[bytes]:
    """SIGKILL the server and start a fresh, empty one on the same port."""
    command = redis.process.args
    redis.process.kill()
    redis.process.wait()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    redis.process = process
    deadline = time.monotonic() + 15
    while True:
        try:
            redis.client.ping()
            return process
        except Exception:  # noqa: BLE001 - not up yet
            assert time.monotonic() < deadline, "the private Redis did not come back"
            time.sleep(0.05)


def test_a_redis_that_loses_its_writes_mid_stream_is_refilled_from_kafka(
    kafka_bootstrap, fresh_topics, unique_name, tmp_path, cdnow_events, cdnow_frame
):
    events = subset(cdnow_events, "02000")
    redis = PrivateRedis(tmp_path)  # no AOF, no RDB: a restart loses everything
    pipeline = Pipeline(kafka_bootstrap, redis.url, fresh_topics, unique_name, tmp_path)
    try:
        half = len(events) // 2
        pipeline.produce(events[:half])
        worker = pipeline.start_worker()
        pipeline.wait_applied(1.0)
        restart_empty(redis)  # every commit of the first half is gone from the store
        pipeline.produce(events[half:])
        pipeline.wait_applied(1.0)
        pipeline.wait_quiet()
        assert worker.poll() is None, pipeline.logs()
        assert_exact(pipeline, cdnow_frame, {e.customer_id for e in events})
        tallies = pipeline.store.tallies()
        outcomes = sum(tallies.get(k, 0) for k in ("applied", "duplicate", "outside_window"))
        assert outcomes == len(events), tallies
        log = (tmp_path / "worker-0.log").read_text(errors="replace")
        assert "the store's applied offsets went back" in log
    finally:
        pipeline.stop_all()
        pipeline.store.close()
        redis.stop()
