"""Fault injection for the worker's failure tests: a private Redis, Redis and Kafka faults
that always heal, a paced producer, a fencing "zombie", and bounded waits that say what
was stuck.

Every fault is a context manager that restores what it changed in ``finally``, so a
failing test leaves neither its private Redis nor its Kafka topic half broken.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from kafka.admin import ConfigResource, ConfigResourceType

from bench.infra import PrivateRedis
from scoring.events import InputEvent
from streams.producer import produce
from tests.integration.api_support import free_port
from tests.integration.helpers import admin_client
from tests.integration.pipeline import Pipeline
from tierstream.stores.redis import RedisStore


# ------------------------------------------------------------------ private Redis
class PrivateRedisServer(PrivateRedis):
    """A redis-server of our own (free port, temp dir, appendonly yes) that a test may make
    read-only or short of memory without disturbing the shared one."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, appendonly=True)

    def error_count(self, code: str) -> int:
        """How many replies this server sent with error ``code`` (INFO errorstats)."""
        stats = self.client.info("errorstats")
        return int(stats.get(f"errorstat_{code}", {}).get("count", 0))


# ------------------------------------------------------------------------ faults
@contextmanager
def redis_read_only(server: PrivateRedisServer) -> Iterator[None]:
    """The server becomes a replica of a master that does not exist (a loopback port
    nothing listens on): it keeps its data and serves reads, and answers every write
    with READONLY until ``REPLICAOF NO ONE``."""
    server.client.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
    try:
        yield
    finally:
        server.client.execute_command("REPLICAOF", "NO", "ONE")


@contextmanager
def redis_out_of_memory(server: PrivateRedisServer, headroom: int = 4096) -> Iterator[None]:
    """maxmemory just above the memory in use, and noeviction: writes fail with OOM."""
    saved = {
        name: server.client.config_get(name)[name] for name in ("maxmemory", "maxmemory-policy")
    }
    used = int(server.client.info("memory")["used_memory"])
    server.client.config_set("maxmemory-policy", "noeviction")
    server.client.config_set("maxmemory", str(used + headroom))
    try:
        yield
    finally:
        for name, value in saved.items():
            server.client.config_set(name, value)


@contextmanager
def kafka_topic_rejects_messages(bootstrap: str, topic: str, limit: int = 100) -> Iterator[None]:
    """The broker rejects every record sent to ``topic`` (max.message.bytes = ``limit``):
    each produce request fails with MESSAGE_TOO_LARGE until the setting is restored."""
    admin = admin_client(bootstrap)
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, ["max.message.bytes"])
        described = admin.describe_configs([resource])
        original = _topic_override(described, topic, "max.message.bytes")
        limited = _topic_config(topic, "max.message.bytes", str(limit))
        _check(admin.alter_configs([limited]), topic)
        try:
            yield
        finally:
            restored = _topic_config(topic, "max.message.bytes", original)
            if original is None:
                _check(admin.reset_configs([restored]), topic)
            else:
                _check(admin.alter_configs([restored]), topic)
    finally:
        admin.close()


def _topic_config(topic: str, name: str, value: str | None) -> ConfigResource:
    return ConfigResource(ConfigResourceType.TOPIC, topic, {name: value})


def _topic_override(described: dict, topic: str, name: str) -> str | None:
    """The topic's own (dynamic) value of ``name``, or None if it uses the default
    (kafka-python 3 describes only the settings that differ from the defaults)."""
    entry = described.get("topic", {}).get(topic, {}).get(name)
    if entry and entry.get("config_source") == "DYNAMIC_TOPIC_CONFIG":
        return str(entry["value"])
    return None


def _check(result: dict, topic: str) -> None:
    """alter/reset_configs answer with a per-resource status rather than raising."""
    status = result.get("topic", {}).get(topic)
    assert status == "OK", f"changing the config of topic {topic} failed: {result!r}"


class Zombie:
    """Another owner of a shard: bumps its epoch with ``RedisStore.acquire`` every
    ``interval`` seconds (0: as fast as Redis answers) from a thread, fencing whoever
    holds it, like a second worker that believes the shard is still its own."""

    def __init__(self, pipeline: Pipeline, shard: int, interval: float) -> None:
        self.store = RedisStore(
            pipeline.redis_url, partitions=pipeline.partitions, namespace=pipeline.namespace
        )
        self.shard = shard
        self.interval = interval
        self.acquired = 0
        self.last_epoch = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zombie", daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.last_epoch = self.store.acquire(self.shard).epoch
                self.acquired += 1
                if self.interval:
                    self._stop.wait(self.interval)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def __enter__(self) -> Zombie:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.store.close()
        assert self.error is None, f"the zombie's acquire failed: {self.error!r}"


# ------------------------------------------------------------------------- input
class Feeder:
    """Produces events in order at a steady rate from a thread, so that the stream is still
    flowing while a fault is injected (the worker alone applies a few thousand events
    in about a second). ``stop()`` ends it early (teardown: before the topics go)."""

    def __init__(self, pipeline: Pipeline, events: list[InputEvent], rate: float) -> None:
        self.pipeline = pipeline
        self.events = events
        self.rate = rate
        self.sent = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self._thread.start()

    def _until_stopped(self) -> Iterator[InputEvent]:
        for event in self.events:
            if self._stop.is_set():
                return
            yield event

    def _run(self) -> None:
        try:
            self.sent = produce(
                self.pipeline.bootstrap,
                self._until_stopped(),
                purchases_topic=self.pipeline.topics["purchases"],
                engagements_topic=self.pipeline.topics["engagements"],
                rate=self.rate,
            )
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.error = exc

    def join(self, timeout: float = 120) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"producing the input took over {timeout}s"
        assert self.error is None, f"producing the input failed: {self.error!r}"
        assert self.sent == len(self.events), (self.sent, len(self.events))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


# --------------------------------------------------------------- observation
def applied(pipeline: Pipeline) -> int:
    """Input messages the store says were applied: the sum of its per-shard offsets (the
    pipeline's topics are fresh, so offsets count messages). A read: works on a Redis
    that is read-only or out of memory."""
    return sum(sum(pipeline.store.offsets(shard).values()) for shard in range(pipeline.partitions))


def report(pipeline: Pipeline, total: int | None = None, log_chars: int = 4000) -> str:
    """What the pipeline is doing, for failure messages: applied input, outbox lengths and
    epochs per shard, worker processes and the tail of their logs."""
    lines = []
    try:
        done = applied(pipeline)
        if total:
            lines.append(f"applied {done}/{total} input messages ({done / total:.1%})")
        client = pipeline.store._client  # a test looking inside
        for shard in range(pipeline.partitions):
            epoch = client.hget(pipeline.store.meta_key(shard), "epoch")
            outbox = client.llen(pipeline.store.outbox_key(shard))
            offsets = pipeline.store.offsets(shard)
            lines.append(
                f"shard {shard}: epoch {epoch.decode() if epoch else None}, "
                f"outbox {outbox} entries, offsets {offsets}"
            )
    except redis.RedisError as exc:
        lines.append(f"(Redis unreadable: {exc!r})")
    for index, process in enumerate(pipeline.workers):
        code = process.poll()
        state = "running" if code is None else f"exited with {code}"
        lines.append(f"worker-{index} (pid {process.pid}): {state}")
    logs = sorted(pipeline.workdir.glob("worker-*.log"))
    for path in logs:
        text = path.read_text(errors="replace")
        # Crashes first: their tracebacks soon push the line that names them out of the tail.
        alarms = [line for line in text.splitlines() if "[ERROR]" in line or "[CRITICAL]" in line]
        if alarms:
            lines.append(f"--- {path.name}: errors (last 5 of {len(alarms)}) ---")
            lines += [alarm[-300:] for alarm in alarms[-5:]]
        lines.append(f"--- {path.name} (tail) ---\n{text[-log_chars // max(1, len(logs)) :]}")
    return "\n".join(lines)


def assert_workers_alive(pipeline: Pipeline, what: str) -> None:
    for process in pipeline.workers:
        assert process.poll() is None, f"a worker exited {what}:\n{report(pipeline)}"


def wait_for(
    pipeline: Pipeline,
    done: Callable[[], bool],
    what: str,
    timeout: float,
    total: int | None = None,
    live: bool = True,
) -> None:
    """Poll ``done`` until it holds; fail after ``timeout`` s (or as soon as a worker
    exits, with ``live``) saying ``what`` was awaited and where the pipeline stands."""
    deadline = time.monotonic() + timeout
    while True:
        if done():
            return
        if live:
            assert_workers_alive(pipeline, f"while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(
                f"stuck: {what} did not happen within {timeout:.0f}s\n{report(pipeline, total)}"
            )
        time.sleep(0.25)


def wait_applied(pipeline: Pipeline, count: int, timeout: float, what: str, total: int) -> None:
    wait_for(
        pipeline,
        lambda: applied(pipeline) >= count,
        f"{count} applied input messages ({what})",
        timeout,
        total,
    )


def loss_summary(pipeline: Pipeline, events: list[InputEvent]) -> str:
    """How far the store is from the input: customers missing, outcomes counted."""
    customers = {e.customer_id for e in events}
    stored = sum(1 for c in customers if pipeline.store.get(c) is not None)
    tallies = pipeline.store.tallies()
    outcomes = {k: tallies.get(k, 0) for k in ("applied", "duplicate", "outside_window")}
    return (
        f"{len(customers) - stored} of {len(customers)} customers missing from the state; "
        f"outcomes counted {sum(outcomes.values())} of {len(events)} events {outcomes}"
    )


def settle(pipeline: Pipeline, total: int, timeout: float = 90) -> None:
    """Everything applied, the outbox drained and the timer's commits over, with the
    pipeline's own waits (wait_quiet) and a report of where it stands if not."""
    wait_applied(pipeline, total, timeout, "all of the input, after healing", total)
    try:
        pipeline.wait_quiet(timeout=60)
    except AssertionError as exc:
        first = str(exc).splitlines()[0]
        raise AssertionError(f"stuck: {first}\n{report(pipeline, total)}") from None
    assert_workers_alive(pipeline, "after the input was applied")
