"""`tierstream deliver` follows `tierstream config apply`, with the real worker and Kafka.

A running deliver is given a new published version that adds a subscription, changes
another's filter, removes a third and adds one whose secret is missing. Changes produced
after the apply reach the new subscription and follow the changed filter; what was
delivered before is neither lost nor delivered again; the refused one is one log line.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from tests.integration.api_support import free_port
from tests.integration.pipeline import ROOT, Pipeline, subset
from tests.integration.receiver import Receiver
from tests.integration.test_subscriptions import (
    deliver_metrics,
    hook,
    start_deliver,
    subscriptions_config,
    wait_for,
)

Change = dict[str, Any]

# What each subscription's `when` below selects, computed here from the change itself.
FILTERS: dict[str, Callable[[Change], bool]] = {
    "entered-vip": lambda c: c["new_tier"] == "VIP" != c["previous_tier"],
    "left-vip": lambda c: c["previous_tier"] == "VIP" != c["new_tier"],
    "entered-a": lambda c: c["new_tier"] == "A" != c["previous_tier"],
    "left-a": lambda c: c["previous_tier"] == "A" != c["new_tier"],
}
WHEN = {
    "entered-vip": {"entered_tier": "VIP"},
    "left-vip": {"left_tier": "VIP"},
    "entered-a": {"entered_tier": "A"},
    "left-a": {"left_tier": "A"},
}


def subscription(name: str, url: str, when: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "when": WHEN[when], "webhook": hook(f"{url}/{name}", **extra)}


def delivered_ids(receiver: Receiver, name: str) -> list[str]:
    return [json.loads(r.body)["event_id"] for r in receiver.delivered(f"/{name}")]


def selected(changes: list[Change], when: str) -> set[str]:
    return {c["event_id"] for c in changes if FILTERS[when](c)}


def apply(pipeline: Pipeline, path: Path, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(  # our own CLI
        [sys.executable, "-m", "tierstream.cli", "config", "apply", str(path)],
        cwd=ROOT,
        env={**pipeline.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_deliver_follows_added_changed_and_removed_subscriptions(
    make_pipeline, cdnow_events, tmp_path: Path
):
    events = subset(cdnow_events, "00300")  # in event-time order
    first, second = events[: len(events) // 2], events[len(events) // 2 :]
    with Receiver() as receiver:
        url = receiver.url
        version0 = subscriptions_config(
            tmp_path,
            [
                subscription("vip", url, "entered-vip"),  # unchanged by version 1
                subscription("moved", url, "left-a"),  # version 1: entered-a
                subscription("dropped", url, "entered-a"),  # removed by version 1
            ],
        )
        (tmp_path / "v1").mkdir()
        version1 = subscriptions_config(
            tmp_path / "v1",
            [
                subscription("vip", url, "entered-vip"),
                subscription("moved", url, "entered-a"),
                subscription("added", url, "left-vip"),
                subscription("unsigned", url, "entered-vip", secret_env="NOT_SET_ANYWHERE"),
            ],
        )
        pipeline = make_pipeline(config=version0)
        # The worker keeps its config: only deliver follows version 1 in this test (the
        # worker's sweep would emit nothing anyway, subscriptions never move a tier).
        pipeline.start_worker(env={"TIERSTREAM_CONFIG_CHECK_SECONDS": "3600"})
        pipeline.produce(first)
        pipeline.wait_applied()
        pipeline.wait_quiet()
        before = pipeline.changes()

        log = tmp_path / "deliver.log"
        port = free_port()
        check = {"TIERSTREAM_CONFIG_CHECK_SECONDS": "0.5"}
        deliver = start_deliver(pipeline, log, port, loglevel="info", env=check)
        try:
            first_wave = {"vip": "entered-vip", "moved": "left-a", "dropped": "entered-a"}
            wait_for(
                lambda: (
                    all(
                        set(delivered_ids(receiver, name)) >= selected(before, when)
                        for name, when in first_wave.items()
                    )
                    and deliver_metrics(port, {("lag", n): 0 for n in first_wave})
                    == {("lag", n): 0 for n in first_wave}
                ),
                120,
                "the changes before the apply were not all delivered and committed",
                log,
            )

            apply(pipeline, version1)
            wait_for(
                lambda: "subscription added added by config version 1" in log.read_text(),
                30,
                "version 1 was not followed",
                log,
            )
            pipeline.produce(second)
            pipeline.wait_applied()
            pipeline.wait_quiet()
            changes = pipeline.changes()
            earlier = {c["event_id"] for c in before}
            after = [c for c in changes if c["event_id"] not in earlier]
            assert earlier <= {c["event_id"] for c in changes}
            expected = {
                "vip": selected(changes, "entered-vip"),
                "moved": selected(before, "left-a") | selected(after, "entered-a"),
                "added": selected(changes, "left-vip"),  # a new group: from --start earliest
                "dropped": selected(before, "entered-a"),  # nothing after its removal
            }
            # The test has teeth: each filter has changes on both sides of the apply.
            # The test has teeth: the filters in force on each side of the apply match
            # changes there (on this subset, nobody leaves VIP before it).
            counts = {w: (len(selected(before, w)), len(selected(after, w))) for w in FILTERS}
            sides = {"entered-vip": (0, 1), "left-a": (0,), "entered-a": (0, 1), "left-vip": (1,)}
            assert all(counts[w][side] for w, each in sides.items() for side in each), counts
            wait_for(
                lambda: all(
                    set(delivered_ids(receiver, name)) >= ids for name, ids in expected.items()
                ),
                60,
                "the changes after the apply were not all delivered",
                log,
            )
            wanted = {("delivered", n): len(expected[n]) for n in ("vip", "moved", "added")}
            wanted |= {("lag", n): 0 for n in ("vip", "moved", "added")}
            wait_for(
                lambda: deliver_metrics(port, wanted) == wanted,
                30,
                f"the metrics did not reach {wanted}",
                log,
            )
            assert deliver_metrics(port, {("delivered", "dropped"): 0}) == {}  # removed
            assert deliver.poll() is None
        finally:
            deliver.send_signal(signal.SIGTERM)
            deliver.wait(timeout=30)
        text = log.read_text()
        assert deliver.returncode == 0, text

    for name, ids in expected.items():
        delivered = delivered_ids(receiver, name)
        assert set(delivered) == ids, name
        # A clean switch redelivers nothing: each change was POSTed once.
        assert [e for e, n in Counter(delivered).items() if n > 1] == [], name
    assert not receiver.delivered("/unsigned")
    lines = text.splitlines()
    for line in (
        "subscription moved changed by config version 1",
        "subscription added added by config version 1",
        "subscription dropped removed by config version 1",
    ):
        assert sum(line in each for each in lines) == 1, (line, text)
    refused = [each for each in lines if "subscription unsigned" in each]
    assert len(refused) == 1, text
    assert "NOT_SET_ANYWHERE is not set" in refused[0]
    assert not [each for each in lines if "subscription vip " in each and "by config" in each]
    assert "Traceback" not in text


# ------------------------------------------------- Redis down, then an idle version


class OwnRedis:
    """A redis-server of this test's own on ``port``, stopped and started again; its
    append-only file keeps what was published across the restart."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port, self.dir = port, workdir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(  # a redis-server of our own
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "yes", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=5)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: the append-only file is flushed
            self.process.wait(timeout=30)


def vip_entered(customer: str) -> tuple[bytes, bytes]:
    """A tier change as the worker writes it, as far as a subscription looks."""
    change = {
        "event_id": str(uuid.uuid4()),
        "customer_id": customer,
        "previous_tier": "A",
        "new_tier": "VIP",
        "cause": "purchase",
    }
    return customer.encode(), json.dumps(change).encode()


def count(log: Path, text: str) -> int:
    return sum(text in line for line in log.read_text().splitlines())


def other_deliver(pipeline: Pipeline, env: dict[str, str], config: Path, until: str) -> str:
    """Run another deliver (groups of its own, from the latest changes) with ``config`` as
    its local file until its log says ``until``; its log, on one line."""
    log = pipeline.workdir / f"other-{uuid.uuid4().hex[:8]}.log"
    other = subprocess.Popen(  # our own CLI
        [sys.executable, "-m", "tierstream.cli", "deliver", "--start", "latest"],
        cwd=ROOT,
        env={**pipeline.env, **env, "TIERSTREAM_CONFIG": str(config), "TEST_HOOK_SECRET": "x"}
        | {"TIERSTREAM_APP_ID": f"{pipeline.app_id}-other"},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: count(log, until) == 1, 60, f"no {until!r}", log)
        assert other.poll() is None, log.read_text()
    finally:
        other.send_signal(signal.SIGTERM)
        other.wait(timeout=30)
    assert other.returncode == 0, log.read_text()
    return " ".join(log.read_text().split())


def test_deliver_starts_without_redis_waits_idle_and_survives_a_redis_restart(
    make_pipeline, tmp_path: Path
):
    port = free_port()  # nothing listens there yet
    own = OwnRedis(port, tmp_path)
    with Receiver() as receiver:
        local = subscriptions_config(tmp_path, [subscription("local", receiver.url, "entered-vip")])
        (tmp_path / "v1").mkdir()
        idle = subscriptions_config(tmp_path / "v1", [])
        pipeline = make_pipeline(config=local)  # no worker: the changes are written here
        env = {"TIERSTREAM_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
        log = tmp_path / "deliver.log"
        deliver = start_deliver(
            pipeline, log, loglevel="info", env={**env, "TIERSTREAM_CONFIG_CHECK_SECONDS": "0.5"}
        )
        try:
            wait_for(
                lambda: count(log, "published config not read yet") == 1, 60, "no warning", log
            )
            first, second = vip_entered("00001"), vip_entered("00002")
            pipeline.produce_raw("tier-changes", [first])
            wait_for(lambda: len(receiver.delivered("/local")) == 1, 60, "local not used", log)

            own.start()
            apply(pipeline, idle, env)
            wait_for(lambda: count(log, "config version 1 has no subscriptions") == 1, 30,
                     "version 1 (no subscriptions) not followed", log)  # fmt: skip
            # One started while version 1 is in force stays up, idle, though its local file
            # has a subscription.
            text = other_deliver(pipeline, env, local, "config version 1 has no subscriptions")
            assert "differs from the published version 1" in text, text
            pipeline.produce_raw("tier-changes", [second])
            own.stop()
            wait_for(lambda: count(log, "published config not read (") == 1, 30,
                     "the lost Redis was not noticed", log)  # fmt: skip
            # A check interval and more have passed: a running subscription would have it.
            assert len(receiver.delivered("/local")) == 1
            own.start()
            wait_for(lambda: count(log, "published config readable again") == 1, 30,
                     "Redis back not noticed", log)  # fmt: skip
            apply(pipeline, local, env)
            wait_for(lambda: len(receiver.delivered("/local")) == 2, 30,
                     "the re-added subscription did not go on from its offsets", log)  # fmt: skip
            assert deliver.poll() is None
            # A deliver started now with a local file without subscriptions delivers the
            # published version's, and names the difference in one line.
            text = other_deliver(pipeline, env, idle, "delivering 1 subscription(s): local")
            assert "differs from the published version 2" in text, text
        finally:
            deliver.send_signal(signal.SIGTERM)
            deliver.wait(timeout=30)
            own.stop()
    text = log.read_text()
    assert deliver.returncode == 0, text
    delivered = [json.loads(r.body)["event_id"] for r in receiver.delivered("/local")]
    assert delivered == [json.loads(first[1])["event_id"], json.loads(second[1])["event_id"]]
    assert count(log, "subscription local removed by config version 1") == 1
    assert count(log, "subscription local added by config version 2") == 1
    assert count(log, "published config not read (") == 1  # once per outage, not per check
    assert "Traceback" not in text
