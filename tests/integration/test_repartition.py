"""``tierstream repartition`` between two halves of a CDNOW history on real Kafka and Redis.

4 partitions for the first part, then the runbook: stop the worker, add partitions to the
input topics, repartition, start the worker with 12, produce the rest. The state must
equal the independent batch computation for every customer, the change chains continue
across the move, and the running totals count every event once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from kafka import KafkaProducer
from kafka.admin import NewPartitions

from tests.accounts.reference import with_accounts
from tests.integration.helpers import admin_client
from tests.integration.pipeline import ROOT, assert_applied_exactly_once, subset
from tests.integration.test_accounts_worker import (
    account_store,
    assert_accounts_equal_reference,
    assert_settled_accounts_exact,
    wait_accounts_settled,
)
from tierstream.repartition import pending, repartition
from tierstream.repartition_kafka import old_layout_messages
from tierstream.stores import Batch, shard_for
from tierstream.stores.redis import RedisStore

TARGET = 12


def add_partitions(bootstrap: str, topics: list[str], count: int) -> None:
    admin = admin_client(bootstrap)
    try:
        admin.create_partitions({topic: NewPartitions(total_count=count) for topic in topics})
    finally:
        admin.close()


def cli(pipeline, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(  # our own CLI
        [sys.executable, "-m", "tierstream.cli", *args],
        cwd=ROOT,
        env={**pipeline.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def wait_group_empty(pipeline, timeout: float = 60) -> None:
    admin = admin_client(pipeline.bootstrap)
    try:
        deadline = time.monotonic() + timeout
        while admin.describe_groups([pipeline.app_id])[pipeline.app_id]["members"]:
            assert time.monotonic() < deadline, "the stopped worker is still a group member"
            time.sleep(0.5)
    finally:
        admin.close()


def test_repartition_from_4_to_12_between_two_halves_of_cdnow(
    make_pipeline, cdnow_events, cdnow_frame
):
    # With accounts: their shards (keyed by account, on the contributions topic) move too.
    events = with_accounts(subset(cdnow_events, "05000"))
    first, second = events[: len(events) * 3 // 5], events[len(events) * 3 // 5 :]
    pipeline = make_pipeline()
    inputs = [
        pipeline.topics[name] for name in ("purchases", "engagements", "erasures", "profiles")
    ]
    accounts = account_store(pipeline)
    pipeline.produce(first)
    worker = pipeline.start_worker()
    pipeline.wait_applied(1.0)
    pipeline.wait_quiet()
    wait_accounts_settled(pipeline, accounts)
    accounts_before = {s.customer_id for s in accounts.scan()}

    refused = cli(pipeline, "repartition", "--to", str(TARGET))
    assert refused.returncode == 2 and "member" in refused.stderr, refused.stderr
    pipeline.kill(worker, 15)  # SIGTERM: the worker leaves the group
    pipeline.workers.remove(worker)  # stopped on purpose (its exit status is its own)
    wait_group_empty(pipeline)
    refused = cli(pipeline, "repartition", "--to", str(TARGET))
    assert refused.returncode == 2 and "has 4 partitions" in refused.stderr, refused.stderr

    add_partitions(pipeline.bootstrap, inputs, TARGET)
    refused = cli(pipeline, "repartition", "--to", str(TARGET))
    contributions = pipeline.topics["account-contributions"]
    assert refused.returncode == 2 and f"{contributions!r} has 4 partitions" in refused.stderr
    add_partitions(pipeline.bootstrap, [contributions], TARGET)
    done = cli(pipeline, "repartition", "--to", str(TARGET))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    customers = {e.customer_id for e in first}
    assert summary["customers"] == len(customers)
    assert summary["moved"] == sum(1 for c in customers if shard_for(c, TARGET) != shard_for(c, 4))
    assert summary["accounts"] == len(accounts_before) > 100
    assert summary["accounts_moved"] == sum(
        1 for a in accounts_before if shard_for(a, TARGET) != shard_for(a, 4)
    )
    again = cli(pipeline, "repartition", "--to", str(TARGET))
    assert again.returncode == 0 and "nothing to do" in again.stderr

    # A worker still configured for 4 partitions is refused: the store says 12.
    stale = cli(pipeline, "worker", env={"TIERSTREAM_PARTITIONS": "4"})
    assert stale.returncode == 2 and "laid out for 12" in stale.stderr, stale.stderr

    pipeline.partitions = TARGET
    pipeline.env["TIERSTREAM_PARTITIONS"] = str(TARGET)
    pipeline.store.close()
    pipeline.store = RedisStore(pipeline.redis_url, partitions=TARGET, namespace=pipeline.namespace)
    accounts.close()
    accounts = account_store(pipeline)
    pipeline.produce(second)  # a new producer: Kafka's partitioner now spreads over 12
    pipeline.start_worker()
    try:
        assert_applied_exactly_once(pipeline, cdnow_frame, events)
        for shard in range(TARGET):
            for customer_id in pipeline.store.customer_ids(shard):
                assert shard_for(customer_id, TARGET) == shard, customer_id
            for account_id in accounts.customer_ids(shard):
                assert shard_for(account_id, TARGET) == shard, account_id
        assert_settled_accounts_exact(pipeline, accounts, cdnow_frame, "05000")
    finally:
        accounts.wipe()
        accounts.close()


def test_messages_produced_for_the_old_count_and_not_applied_are_found(
    kafka_bootstrap, redis_url, fresh_topics
):
    topics = fresh_topics({"purchases": 4})
    keys = [f"c{n:04d}".encode() for n in range(300)]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for key in keys:
        producer.send(topics["purchases"], key=key, value=b"{}")
    producer.flush()
    producer.close()
    add_partitions(kafka_bootstrap, [topics["purchases"]], TARGET)
    store = RedisStore(redis_url, partitions=TARGET, namespace=f"ol{time.monotonic_ns()}")
    ids = [key.decode() for key in keys]

    def left_over() -> int:
        return old_layout_messages(kafka_bootstrap, store, [topics["purchases"]], 4, TARGET, {})

    try:
        assert left_over() == sum(1 for c in ids if shard_for(c, TARGET) != shard_for(c, 4)) > 0
        # Once applied (the store's offsets at the end), nothing is left over.
        ends = {p: sum(1 for c in ids if shard_for(c, 4) == p) for p in range(4)}
        for partition, end in ends.items():
            lease = store.acquire(partition)
            store.commit(lease, Batch(offsets={topics["purchases"]: end}))
        assert left_over() == 0
    finally:
        store.wipe()
        store.close()


class Interrupted(Exception):
    pass


def test_a_repartition_interrupted_in_the_account_shards_resumes_them_then_the_customers(
    make_pipeline, cdnow_events, cdnow_frame
):
    # Accounts move first: a run stopped in their move leaves their progress marker, and
    # the next run finishes them (same plan) before it moves the customers.
    events = with_accounts(subset(cdnow_events, "01500"))
    pipeline = make_pipeline()
    accounts = account_store(pipeline)
    try:
        pipeline.produce(events)
        worker = pipeline.start_worker()
        pipeline.wait_applied(1.0)
        pipeline.wait_quiet()
        wait_accounts_settled(pipeline, accounts)
        pipeline.kill(worker, 15)
        pipeline.workers.remove(worker)
        wait_group_empty(pipeline)
        add_partitions(
            pipeline.bootstrap,
            [pipeline.topics[name] for name in ("purchases", "engagements", "erasures")]
            + [pipeline.topics["profiles"], pipeline.topics["account-contributions"]],
            TARGET,
        )
        wide = account_store(pipeline, partitions=TARGET)

        def stop(moved: int) -> None:
            raise Interrupted

        try:
            repartition(wide, 4, TARGET, lambda shard, entries: None, after_chunk=stop)
        except Interrupted:
            pass
        assert pending(wide) is not None
        wide.close()
        refused = cli(pipeline, "worker", env={"TIERSTREAM_PARTITIONS": str(TARGET)})
        # The account shards' unfinished move stops a worker, whatever the customers say.
        assert refused.returncode == 2 and "unfinished" in refused.stderr, refused.stderr

        done = cli(pipeline, "repartition", "--to", str(TARGET))
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["resumed"] and summary["customers"] == len({e.customer_id for e in events})
        assert summary["accounts"] == len(list(accounts.scan()))

        accounts.close()
        accounts = account_store(pipeline, partitions=TARGET)
        for shard in range(TARGET):
            for account_id in accounts.customer_ids(shard):
                assert shard_for(account_id, TARGET) == shard, account_id
        frame = cdnow_frame[cdnow_frame["customer_id"] < "01500"]
        assert_accounts_equal_reference(accounts, pipeline.scorer, frame)
    finally:
        accounts.wipe()
        accounts.close()
