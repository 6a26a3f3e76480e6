"""A worker refuses to start, in one line, on input topics it could not consume correctly.

Kafka's consumer only logs "Ignoring missing topic" and runs without it, so a typo in
TIERSTREAM_TOPIC_ERASURES or an input topic created with the broker's default partition
count would leave events unscored (or on the wrong shard) behind a healthy-looking worker.
"""

from __future__ import annotations

import subprocess
import sys

from tests.integration.pipeline import ROOT
from tierstream.topics import ensure_topics


def start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tierstream.cli", "worker", "--loglevel", "warning"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_missing_input_topic_stops_the_worker_before_it_starts(make_pipeline, unique_name):
    pipeline = make_pipeline()
    absent = unique_name("absent-erasures")
    result = start({**pipeline.env, "TIERSTREAM_TOPIC_ERASURES": absent})
    assert result.returncode == 2, result.stdout + result.stderr
    output = (result.stdout + result.stderr).strip()
    assert f"worker not started: topic(s) {absent} do not exist" in output
    assert "`tierstream topics create`" in output
    assert "Traceback" not in output


def test_an_input_topic_with_another_partition_count_stops_the_worker(make_pipeline, fresh_topics):
    pipeline = make_pipeline()
    wider = fresh_topics({"purchases-8": 8})["purchases-8"]
    result = start({**pipeline.env, "TIERSTREAM_TOPIC_PURCHASES": wider})
    assert result.returncode == 2, result.stdout + result.stderr
    output = (result.stdout + result.stderr).strip()
    assert f"topic {wider} has 8 partitions but TIERSTREAM_PARTITIONS is" in output
    assert "Traceback" not in output


def test_a_contributions_topic_with_another_partition_count_stops_the_worker(
    make_pipeline, fresh_topics, unique_name
):
    # Account shard p is partition p of the accounts' internal topic: left at another count
    # (partitions added to the inputs only), contributions would reach the wrong shard.
    pipeline = make_pipeline()
    app_id = unique_name("app")
    contributions = f"{app_id}-account-contributions"
    ensure_topics(pipeline.bootstrap, {contributions: 8})
    fresh_topics.track(contributions)
    result = start({**pipeline.env, "TIERSTREAM_APP_ID": app_id})
    assert result.returncode == 2, result.stdout + result.stderr
    output = (result.stdout + result.stderr).strip()
    assert f"topic {contributions} has 8 partitions but TIERSTREAM_PARTITIONS is" in output
    assert "Traceback" not in output
