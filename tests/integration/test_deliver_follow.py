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
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def apply(pipeline: Pipeline, path: Path) -> None:
    result = subprocess.run(  # our own CLI
        [sys.executable, "-m", "tierstream.cli", "config", "apply", str(path)],
        cwd=ROOT,
        env=pipeline.env,
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
