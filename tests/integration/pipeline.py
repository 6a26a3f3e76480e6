"""One isolated tierstream deployment on the real local Kafka and Redis, for worker tests.

Fresh topics, a fresh Redis namespace and consumer group per test; workers run as real
``tierstream worker`` processes, so they can be killed with SIGKILL like in production.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from scoring.engine import Scorer
from scoring.events import InputEvent
from streams.producer import produce
from tests.integration.helpers import FreshTopics
from tests.reference import batch_rfm
from tierstream.settings import load_scoring_config
from tierstream.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[2]
# The as-of moment of the CDNOW reference comparisons.
AS_OF = datetime(1998, 7, 1, tzinfo=UTC)


class Pipeline:
    def __init__(
        self,
        kafka_bootstrap: str,
        redis_url: str,
        fresh_topics: FreshTopics,
        unique_name: Callable[[str], str],
        workdir: Path,
        *,
        partitions: int = 4,
        config: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.bootstrap = kafka_bootstrap
        self.redis_url = redis_url
        self.workdir = workdir
        self.partitions = partitions
        names = fresh_topics(
            {
                "purchases": partitions,
                "engagements": partitions,
                "tier-changes": partitions,
                "dead-letters": 1,
                "erasures": partitions,
                "profiles": partitions,
            }
        )
        self.topics = names
        self.app_id = unique_name("app")
        fresh_topics.track(f"{self.app_id}-__assignor-__leader")
        # The accounts' internal topic is named after the app (tierstream/settings.py).
        contributions = f"{self.app_id}-account-contributions"
        ensure_topics(kafka_bootstrap, {contributions: partitions})
        fresh_topics.track(contributions)
        self.topics["account-contributions"] = contributions
        self.namespace = f"t{uuid.uuid4().hex[:12]}"
        self.config = config
        self.env = {
            **os.environ,
            "TIERSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "TIERSTREAM_REDIS_URL": redis_url,
            "TIERSTREAM_REDIS_NAMESPACE": self.namespace,
            "TIERSTREAM_APP_ID": self.app_id,
            "TIERSTREAM_PARTITIONS": str(partitions),
            "TIERSTREAM_TOPIC_PURCHASES": names["purchases"],
            "TIERSTREAM_TOPIC_ENGAGEMENTS": names["engagements"],
            "TIERSTREAM_TOPIC_TIER_CHANGES": names["tier-changes"],
            "TIERSTREAM_TOPIC_DEAD_LETTERS": names["dead-letters"],
            "TIERSTREAM_TOPIC_ERASURES": names["erasures"],
            "TIERSTREAM_TOPIC_PROFILES": names["profiles"],
            "TIERSTREAM_CLOCK": "event",
            # A killed worker's partitions wait this long before another worker gets
            # them: the broker's smallest (the default is 10 s). No test depends on it,
            # and the kill -9 tests restart workers several times each.
            "TIERSTREAM_KAFKA_SESSION_TIMEOUT": "6",
            **({"TIERSTREAM_CONFIG": str(config)} if config else {}),
            **(env or {}),
        }
        self.workers: list[subprocess.Popen[bytes]] = []
        from tierstream.stores.redis import RedisStore  # noqa: PLC0415

        self.store = RedisStore(redis_url, partitions=partitions, namespace=self.namespace)
        self.store.wipe()
        self.scorer = Scorer(load_scoring_config(config))

    # ---------------------------------------------------------------- workers
    def start_worker(
        self, *options: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"worker-{len(self.workers)}.log").open("wb")
        process = subprocess.Popen(  # our own CLI
            [sys.executable, "-m", "tierstream.cli", "worker", "--loglevel", "warning", *options],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        process.send_signal(sig)
        process.wait(timeout=60)

    def stop_all(self, sig: int = signal.SIGTERM) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(sig)
        for process in self.workers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-3000:] for p in sorted(self.workdir.glob("worker-*.log"))
        )

    # ----------------------------------------------------------------- input
    def produce(self, events: Iterable[InputEvent]) -> int:
        return produce(
            self.bootstrap,
            events,
            purchases_topic=self.topics["purchases"],
            engagements_topic=self.topics["engagements"],
        )

    def produce_raw(self, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        try:
            for key, value in records:
                producer.send(self.topics[topic], key=key, value=value)
            producer.flush(30)
        finally:
            producer.close()

    def end_offsets(self, topic: str) -> dict[int, int]:
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap)
        try:
            tps = [
                TopicPartition(self.topics[topic], p)
                for p in consumer.partitions_for_topic(self.topics[topic])
            ]
            return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
        finally:
            consumer.close()

    def applied_fraction(self) -> float:
        total = done = 0
        for topic in ("purchases", "engagements", "erasures", "profiles"):
            for partition, end in self.end_offsets(topic).items():
                total += end
                done += min(end, self.store.offsets(partition).get(self.topics[topic], 0))
        return done / total if total else 1.0

    def wait_applied(self, fraction: float = 1.0, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.applied_fraction() >= fraction:
                return
            for process in self.workers:
                assert process.poll() in (None, -9, -15), f"worker died:\n{self.logs()}"
            time.sleep(0.5)
        raise AssertionError(
            f"only {self.applied_fraction():.1%} applied after {timeout}s\n{self.logs()}"
        )

    def wait_outbox_empty(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(not self.store.outbox(p, 1) for p in range(self.partitions)):
                return
            time.sleep(0.3)
        raise AssertionError(f"outbox not drained after {timeout}s\n{self.logs()}")

    def wait_quiet(self, timeout: float = 60, still: float = 2.0) -> None:
        """Wait until the outbox is empty and no commit adds a change for ``still`` seconds.

        After the last input is applied, the timer may still commit time-driven changes
        (customers whose rescore moment the event clock has reached); counts taken before
        then race with it.
        """
        deadline = time.monotonic() + timeout
        last: int | None = None
        while time.monotonic() < deadline:
            self.wait_outbox_empty(timeout=max(1.0, deadline - time.monotonic()))
            tallies = self.store.tallies()
            changes = sum(v for k, v in tallies.items() if k.startswith("change:"))
            if changes == last:
                return
            last = changes
            time.sleep(still)
        raise AssertionError(f"commits did not settle within {timeout}s\n{self.logs()}")

    # ---------------------------------------------------------------- output
    def read(self, topic: str) -> list[tuple[bytes | None, bytes]]:
        ends = self.end_offsets(topic)
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=5000,
        )
        tps = [TopicPartition(self.topics[topic], p) for p in ends]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[tuple[bytes | None, bytes]] = []
        positions = dict.fromkeys(ends, 0)
        deadline = time.monotonic() + 60
        try:
            while any(positions[p] < ends[p] for p in ends) and time.monotonic() < deadline:
                for tp, records in consumer.poll(timeout_ms=1000, max_records=10_000).items():
                    for record in records:
                        out.append((record.key, record.value))
                        positions[tp.partition] = record.offset + 1
        finally:
            consumer.close()
        return out

    def changes(self) -> list[dict[str, Any]]:
        return [json.loads(value) for _, value in self.read("tier-changes")]

    def records(self, as_of: datetime) -> dict[str, dict[str, Any]]:
        return {s.customer_id: self.scorer.record(s, as_of) for s in self.store.scan()}


def assert_chains_consistent(changes: list[dict[str, Any]], store: Any) -> int:
    """Redelivered changes are identical; per customer, versions 1..n chain to the stored tier."""
    by_id: dict[str, dict[str, Any]] = {}
    for change in changes:
        seen = by_id.setdefault(change["event_id"], change)
        assert seen == change, f"one event id, two different changes: {seen} != {change}"
    by_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for change in sorted(by_id.values(), key=lambda c: (c["customer_id"], c["version"])):
        by_customer[change["customer_id"]].append(change)
    # One read of every state (RedisStore.get_many), not one round trip per customer.
    states = store.get_many(list(by_customer))
    for customer_id, chain in by_customer.items():
        assert [c["version"] for c in chain] == list(range(1, len(chain) + 1)), customer_id
        for before, after in zip(chain, chain[1:], strict=False):
            assert after["previous_tier"] == before["new_tier"], (customer_id, before, after)
            assert after["previous_segment"] == before["new_segment"], (customer_id, before, after)
            assert after.get("previous_behaviour") == before.get("new_behaviour"), (
                customer_id,
                before,
                after,
            )
        state = states.get(customer_id)
        assert state is not None, customer_id
        assert state.version == chain[-1]["version"], (customer_id, state.version, chain[-1])
        assert (state.tier, state.segment) == (chain[-1]["new_tier"], chain[-1]["new_segment"])
    return len(changes) - len(by_id)


def assert_totals_exact(pipeline: Pipeline, events: int, changes: list[dict[str, Any]]) -> None:
    """The store's running totals and recent histories agree with what was sent and published.

    They are written in the same atomic commit as the states, so crashes and redelivery
    must neither lose nor double a count: every input message ends as exactly one of
    applied, duplicate or outside_window (already-applied redeliveries are not counted),
    and each distinct published change is counted once, by its cause.
    """
    tallies = pipeline.store.tallies()
    outcomes = sum(tallies.get(name, 0) for name in ("applied", "duplicate", "outside_window"))
    assert outcomes == events, tallies
    distinct = {change["event_id"]: change for change in changes}
    by_cause = Counter(change["cause"] for change in distinct.values())
    counted = {
        name.removeprefix("change:"): count
        for name, count in tallies.items()
        if name.startswith("change:") and count
    }
    assert counted == dict(by_cause)
    newest: dict[str, dict[str, Any]] = {}
    for change in distinct.values():
        if change["version"] > newest.get(change["customer_id"], {"version": 0})["version"]:
            newest[change["customer_id"]] = change
    for customer_id in sorted(newest)[:: max(1, len(newest) // 200)]:
        state, history = pipeline.store.lookup(customer_id)
        assert state is not None and history, customer_id
        assert history[0]["event_id"] == newest[customer_id]["event_id"], customer_id
        assert [h["version"] for h in history] == sorted(
            (h["version"] for h in history), reverse=True
        )


def subset(events: list[InputEvent], customers_below: str) -> list[InputEvent]:
    return [e for e in events if e.customer_id < customers_below]


def assert_exact(pipeline: Pipeline, frame: Any, customers: set[str]) -> None:
    """The pipeline's state of ``customers`` equals the independent batch computation
    (tests/reference.py) as of 1998-07-01, to the cent."""
    expected = batch_rfm(frame[frame["customer_id"].isin(customers)], AS_OF.date(), 365)
    records = pipeline.records(AS_OF)
    assert set(records) == set(expected.index)
    wrong = []
    for customer_id, row in expected.iterrows():
        got = records[customer_id]
        if (
            got["frequency"] != row["frequency"]
            or Decimal(got["monetary"]) != Decimal(int(row["monetary_cents"])) / 100
            or got["recency_days"] != row["recency_days"]
        ):
            wrong.append((customer_id, dict(row), got))
    assert wrong == [], f"{len(wrong)} customers differ, e.g. {wrong[:2]}"


def assert_applied_exactly_once(pipeline: Pipeline, frame: Any, events: list[InputEvent]) -> None:
    """Wait for every event to be applied and every change published, then check the
    state against the batch reference, the change chains and the running totals."""
    pipeline.wait_applied(1.0)
    pipeline.wait_quiet()
    assert_exact(pipeline, frame, {e.customer_id for e in events})
    # Accounts' changes share the topic; their chains are checked against account states.
    changes = [c for c in pipeline.changes() if c.get("entity") != "account"]
    assert_chains_consistent(changes, pipeline.store)
    assert_totals_exact(pipeline, len(events), changes)
    assert_audiences_exact(pipeline.store)


def assert_audiences_exact(store: Any) -> None:
    """Every audience's maintained membership set (tierstream/audiences.py) equals the one
    computed from a scan of the stored states, and the sets are not trivially empty."""
    from tierstream.audiences import differences  # noqa: PLC0415
    from tierstream.stores.base import AUDIENCES_META  # noqa: PLC0415

    # The store was empty when the first worker (or backfill) started: it was marked as
    # keeping the running sizes, so differences() checks those too.
    assert store.get_meta(AUDIENCES_META)
    assert differences(store) == []
    assert store.audience_names("tier") and store.audience_names("segment")
