"""The worker on a Redis Cluster: exact CDNOW state through kill -9, a live reshard of the
shards' slots and the failure of a master (its replica takes over)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from redis.crc import key_slot

from tests.integration.api_support import Client, free_port
from tests.integration.pipeline import ROOT, Pipeline, assert_applied_exactly_once

# The whole CDNOW history through kill -9, a reshard and a failover: an acceptance run.
pytestmark = pytest.mark.acceptance


def test_cdnow_through_kafka_on_a_cluster_survives_kill9_reshard_and_failover(
    redis_cluster, kafka_bootstrap, fresh_topics, unique_name, tmp_path, cdnow_events, cdnow_frame
):
    if isinstance(redis_cluster, str):
        pytest.skip("needs the private cluster (it kills a node)")
    pipeline = Pipeline(kafka_bootstrap, redis_cluster.url, fresh_topics, unique_name, tmp_path)
    try:
        assert pipeline.produce(cdnow_events) == 69_659
        worker = pipeline.start_worker()
        pipeline.wait_applied(0.2, timeout=400)
        pipeline.kill(worker)  # SIGKILL: no chance to commit or flush anything
        worker = pipeline.start_worker()

        # Move the slot of one shard (with the slots below it on the same master) to another
        # master while the worker commits: keys migrate one by one (ASK, TRYAGAIN, then
        # MOVED). Its old master keeps some slots: failover needs a majority of the
        # masters that serve slots.
        slot, source, count = next(
            (slot, source, count)
            for shard in range(4)
            for slot in [key_slot(pipeline.store.meta_key(shard))]
            for source, count in [redis_cluster.slots_to_move(slot)]
            if count < sum(last - first + 1 for first, last in redis_cluster.slot_ranges(source))
        )
        target = next(port for port in redis_cluster.masters() if port != source)
        pipeline.wait_applied(0.35, timeout=400)
        mover = threading.Thread(target=redis_cluster.reshard, args=(source, target, count))
        mover.start()
        pipeline.wait_applied(0.55, timeout=400)
        mover.join(timeout=300)
        assert not mover.is_alive()
        assert redis_cluster.owner(slot) == target

        # Kill that master outright: its replica is promoted after the node timeout.
        pipeline.wait_applied(0.7, timeout=400)
        replica = redis_cluster.replica_of(target)
        redis_cluster.kill(target)
        # The worker rides the outage out by itself; the test's own reads wait for the
        # replica to take over.
        redis_cluster.wait_promoted(replica)
        assert_applied_exactly_once(pipeline, cdnow_frame, cdnow_events)
        assert worker.poll() is None, f"the worker must ride it out\n{pipeline.logs()}"
        retried = Counter(
            line.split("(", 1)[1].split(":", 1)[0]
            for log in sorted(tmp_path.glob("worker-*.log"))
            for line in log.read_text(errors="replace").splitlines()
            if "step failed" in line
        )
        print(f"\nsteps redone, by error: {dict(retried)}")
        the_api_and_the_cli_read_the_cluster(pipeline, tmp_path)
    finally:
        pipeline.stop_all()
        redis_cluster.up()  # the killed node comes back (as a replica) for later tests
        redis_cluster.wait_ok()
        pipeline.store.wipe()
        pipeline.store.close()


def the_api_and_the_cli_read_the_cluster(pipeline: Pipeline, tmp_path) -> None:
    """``tierstream serve``, ``customer`` and ``export`` on the same redis+cluster:// URL."""
    customers = {state.customer_id: state for state in pipeline.store.scan()}
    some = sorted(customers)[len(customers) // 2]
    port = free_port()
    serve = subprocess.Popen(  # our own CLI
        [sys.executable, "-m", "tierstream.cli", "serve"],
        cwd=ROOT,
        env={**pipeline.env, "TIERSTREAM_API_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client = Client(port)
                status, health, _ = client.get("/healthz")
                break
            except OSError:
                assert serve.poll() is None and time.monotonic() < deadline
                time.sleep(0.3)
        assert status == 200 and health["redis"]["ok"], health
        status, body = client.customer(some)
        assert status == 200 and body["tier"] == customers[some].tier, body
        while (answer := client.get("/tiers"))[0] == 503:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert answer[0] == 200 and answer[1]["customers"] == len(customers), answer[1]
        assert client.get("/flows")[0] == 200
        client.close()
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    shown = subprocess.run(
        [sys.executable, "-m", "tierstream.cli", "customer", some, "--json"],
        cwd=ROOT,
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(shown.stdout)["tier"] == customers[some].tier
    out = tmp_path / "export.jsonl"
    subprocess.run(
        [sys.executable, "-m", "tierstream.cli", "export", "--state-out", str(out)],
        cwd=ROOT,
        env=pipeline.env,
        capture_output=True,
        timeout=300,
        check=True,
    )
    assert len(out.read_text().splitlines()) == len(customers)
