"""Fresh, uniquely named resources on the shared local Kafka and Redis, and their cleanup.

Other people use the same broker and Redis while the benchmark runs: it only ever creates
topics, consumer groups and Redis namespaces whose names start with ``bench-<run id>``
(``bench<run id>`` for namespaces) and deletes exactly those at the end. It never flushes a
database and never restarts a service; it does notice when someone else restarted one
(``ServiceEpoch``), because that spoils a measurement.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from scoring.events import InputEvent
from streams.producer import produce
from tierstream.kafka_settings import KafkaSettings
from tierstream.topics import ensure_topics

ROOT = Path(__file__).resolve().parent.parent
# quixstreams' own environment (made by `make install`): it pins pydantic below the version
# the published schemas are rendered with, so it stays out of the project's .venv.
PEER_VENV = ROOT / ".venv-peer"
INPUTS = ("purchases", "engagements")
INTERNAL = ("changelog", "repartition")  # quix-streams' internal topic kinds


def kafka_options() -> dict[str, Any]:
    """SASL/TLS options of every benchmark client: the TIERSTREAM_KAFKA_* settings, as the
    worker's (empty for a plaintext broker)."""
    return KafkaSettings().client_options()


def admin_client(bootstrap: str) -> KafkaAdminClient:
    import kafka

    options: dict[str, Any] = {}
    if int(kafka.__version__.split(".")[0]) >= 3:
        options["bootstrap_timeout_ms"] = 5000
    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="tierstream-bench",
        request_timeout_ms=15_000,
        **options,
        **kafka_options(),
    )


@dataclass
class TopicSet:
    """One deployment's topics (logical name -> real name)."""

    names: dict[str, str]
    partitions: int

    def __getitem__(self, logical: str) -> str:
        return self.names[logical]

    def env(self) -> dict[str, str]:
        return {
            "TIERSTREAM_TOPIC_PURCHASES": self["purchases"],
            "TIERSTREAM_TOPIC_ENGAGEMENTS": self["engagements"],
            "TIERSTREAM_TOPIC_TIER_CHANGES": self["tier-changes"],
            "TIERSTREAM_TOPIC_DEAD_LETTERS": self["dead-letters"],
            "TIERSTREAM_TOPIC_ERASURES": self["erasures"],
            "TIERSTREAM_TOPIC_PROFILES": self["profiles"],
            "TIERSTREAM_PARTITIONS": str(self.partitions),
        }


@dataclass
class Resources:
    """Everything this run created, so that ``cleanup`` deletes exactly that."""

    bootstrap: str
    redis_url: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    topics: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    key_patterns: list[str] = field(default_factory=list)
    _counter: int = 0

    def name(self, what: str) -> str:
        self._counter += 1
        return f"bench-{self.run_id}-{what}-{self._counter}"

    def namespace(self) -> str:
        self._counter += 1
        ns = f"bench{self.run_id}n{self._counter}"
        self.namespaces.append(ns)
        return ns

    def group(self, what: str) -> str:
        group = self.name(what)
        self.groups.append(group)
        # Faust declares its assignor topic <app id>-__assignor-__leader on its own, and
        # a worker its accounts' internal topic <app id>-account-contributions.
        self.topics.append(f"{group}-__assignor-__leader")
        self.topics.append(f"{group}-account-contributions")
        return group

    def topic(self, what: str, partitions: int = 4) -> str:
        """One fresh topic of ours."""
        name = self.name(what)
        self.topics.append(name)
        ensure_topics(self.bootstrap, {name: partitions}, **kafka_options())
        return name

    def internal_topics(
        self, existing: Iterable[str], groups: list[str] | None = None
    ) -> list[str]:
        """The topics a library derived from our group names (default: all of them) on its
        own: quix-streams' ``changelog__<group>--…`` and ``repartition__<group>--…``."""
        groups = self.groups if groups is None else groups
        prefixes = tuple(f"{kind}__{group}--" for group in groups for kind in INTERNAL)
        return [t for t in existing if t.startswith(prefixes)] if prefixes else []

    def topic_set(self, what: str, partitions: int = 4) -> TopicSet:
        names = {
            logical: self.name(f"{what}-{logical}")
            for logical in (
                "purchases",
                "engagements",
                "tier-changes",
                "dead-letters",
                "erasures",
                "profiles",
            )
        }
        inputs = ("purchases", "engagements", "tier-changes", "erasures", "profiles")
        counts = {names[k]: partitions for k in inputs}
        counts[names["dead-letters"]] = 1
        self.topics.extend(names.values())
        ensure_topics(self.bootstrap, counts, **kafka_options())
        return TopicSet(names, partitions)

    def redis(self) -> redis.Redis[bytes]:
        return redis.Redis.from_url(self.redis_url)

    def cleanup(self) -> list[str]:
        """Delete what this run created; returns what could not be deleted."""
        problems: list[str] = []
        client = self.redis()
        try:
            patterns = [f"{{{ns}:p*" for ns in self.namespaces]
            patterns += [f"{ns}:*" for ns in self.namespaces] + self.key_patterns
            for pattern in patterns:
                batch: list[bytes] = []
                for key in client.scan_iter(match=pattern, count=2000):
                    batch.append(key)
                    if len(batch) >= 1000:
                        client.unlink(*batch)
                        batch.clear()
                if batch:
                    client.unlink(*batch)
        except redis.RedisError as exc:
            problems.append(f"redis: {exc}")
        finally:
            client.close()
        try:
            admin = admin_client(self.bootstrap)
        except Exception as exc:  # noqa: BLE001 - cleanup reports, never raises
            return problems + [f"kafka admin: {exc}"]
        try:
            existing = set(admin.list_topics())
            doomed = [t for t in self.topics if t in existing] + self.internal_topics(existing)
            if doomed:
                admin.delete_topics(doomed, timeout_ms=30_000)
            if self.groups:
                with contextlib.suppress(Exception):
                    admin.delete_groups(self.groups)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"kafka: {exc}")
        finally:
            admin.close()
        return problems


def load(bootstrap: str, topics: TopicSet, events: Iterable[InputEvent]) -> int:
    """Publish events keyed by customer id (the app's own producer helper)."""
    return produce(
        bootstrap,
        events,
        purchases_topic=topics["purchases"],
        engagements_topic=topics["engagements"],
        **kafka_options(),
    )


def list_topics(bootstrap: str) -> list[str]:
    admin = admin_client(bootstrap)
    try:
        return list(admin.list_topics())
    finally:
        admin.close()


def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **kafka_options())
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        return {
            (tp.topic, tp.partition): offset for tp, offset in consumer.end_offsets(tps).items()
        }
    finally:
        consumer.close()


# ------------------------------------------------------------------- services' identity
@dataclass(frozen=True)
class ServiceEpoch:
    """Who is serving right now: a change between two readings means a restart."""

    redis_run_id: str
    kafka_pid: str

    @classmethod
    def read(cls, redis_url: str) -> ServiceEpoch:
        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        try:
            run_id = str(client.info("server").get("run_id", "?"))
        except redis.RedisError:
            run_id = "unreachable"
        finally:
            client.close()
        pid_file = ROOT / "infra" / "run" / "kafka.pid"
        try:
            kafka_pid = pid_file.read_text().strip() or "?"
        except OSError:
            kafka_pid = "?"
        return cls(run_id, kafka_pid)


# --------------------------------------------------------------- private, idle Redis
class PrivateRedis:
    """A redis-server of our own on a free port, no persistence, for memory measurements.

    The shared Redis is written and flushed by other people's tests while the benchmark
    runs, so its ``used_memory`` moves by megabytes that are not ours. The worker's keys
    are copied here (DUMP/RESTORE keeps their encodings) and measured in isolation, the
    way docs/state-layout.md measured: an otherwise idle Redis of the same build.
    """

    def __init__(self, workdir: Path, *, appendonly: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.dir = workdir / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(  # a redis-server of our own
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if appendonly else "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        # A short socket timeout: our own calls must never hang on a stuck server.
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)
        deadline = time.monotonic() + 15
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise
                time.sleep(0.05)

    def footprint(self, source: redis.Redis[bytes], keys: list[bytes]) -> int:
        """used_memory growth from restoring ``keys`` of ``source`` here (bytes)."""
        self.client.flushall()
        before = int(self.client.info("memory")["used_memory"])
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            pipe = source.pipeline(transaction=False)
            for key in chunk:
                pipe.dump(key)
            dumps = pipe.execute()
            pipe = self.client.pipeline(transaction=False)
            for key, payload in zip(chunk, dumps, strict=True):
                if payload is not None:
                    pipe.restore(key, 0, payload, replace=True)
            pipe.execute()
        after = int(self.client.info("memory")["used_memory"])
        self.client.flushall()
        return after - before

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ------------------------------------------------------------------------- machine
def _kafka_version() -> str:
    """From the running broker's class path (infra/services.sh runs kafka-<version>/libs)."""
    pid_file = ROOT / "infra" / "run" / "kafka.pid"
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        match = re.search(r"kafka-(\d+\.\d+\.\d+)/libs", cmdline) or re.search(
            r"kafka_2\.\d+-(\d+\.\d+\.\d+)", cmdline
        )
        if match:
            return match.group(1)
    with contextlib.suppress(OSError):
        return (ROOT / "infra" / "run" / "kafka" / "formatted-by").read_text().strip()
    return "unknown"


def machine_info(redis_url: str) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        redis_version = str(client.info("server").get("redis_version"))
    except redis.RedisError:
        redis_version = "unreachable"
    finally:
        client.close()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "kafka": _kafka_version(),
        "redis": redis_version,
        "os": platform.platform(),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ----------------------------------------------------------------------- processes
def peer_python() -> str | None:
    """The interpreter for the quix-streams peer: .venv-peer's, else this one if it has
    quixstreams, else None (no peer)."""
    own = PEER_VENV / "bin" / "python"
    if own.exists():
        return str(own)
    return sys.executable if importlib.util.find_spec("quixstreams") else None


class Child:
    """A subprocess with its output in a log file, stopped with SIGTERM then SIGKILL."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        workdir: Path,
        label: str,
        python: str = sys.executable,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{label}.log"
        self._log = self.log_path.open("wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen(  # our own modules
            [python, *args],
            cwd=workdir,  # Faust writes its <app id>-data directory here
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child: ours without any TIERSTREAM_ setting (the benchmark
    measures the defaults; a shell configured for some deployment must not leak in),
    plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERSTREAM_")}
    # The project root on the path: bench is not an installed package.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in started:
            child.stop()
