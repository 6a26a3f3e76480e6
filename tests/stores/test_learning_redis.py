"""Learning statistics committed with the state in Redis: exactly once across crashes."""

from __future__ import annotations

import copy
import json
from collections import defaultdict

import pytest
from typer.testing import CliRunner

from models.learning import Contribution, add_contribution
from scoring.days import day_start
from scoring.engine import Scorer
from scoring.events import EngagementEvent, PurchaseEvent
from streams.behaviour_learning import LearningCoordinator
from streams.deadletters import RawMessage
from streams.learner import shard_learner
from streams.processor import ShardProcessor
from streams.producer import keyed_records
from tests.cdnow import cdnow_history
from tierstream.behaviours import customer_features
from tierstream.cli import app
from tierstream.clock import EventClock
from tierstream.settings import load_scoring_config
from tierstream.stores.base import shard_for
from tierstream.stores.redis import RedisStore

pytestmark = pytest.mark.integration

PARTITIONS = 2
KINDS = {"purchases": PurchaseEvent, "engagements": EngagementEvent}


@pytest.fixture(scope="module")
def messages() -> dict[int, list[RawMessage]]:
    events = list(cdnow_history())
    by_shard: dict[int, list[RawMessage]] = defaultdict(list)
    for is_purchase, key, value in keyed_records(e for e in events if e.customer_id < "00400"):
        shard = shard_for(key.decode(), PARTITIONS)
        topic = "purchases" if is_purchase else "engagements"
        by_shard[shard].append(RawMessage(topic, shard, len(by_shard[shard]), key, value))
    return by_shard


@pytest.fixture
def make_store(redis_url: str, request: pytest.FixtureRequest):
    made: list[RedisStore] = []

    def make(name: str) -> RedisStore:
        store = RedisStore(redis_url, PARTITIONS, namespace=f"learn{name}{id(request)}")
        store.wipe()
        made.append(store)
        return store

    yield make
    for store in made:
        store.wipe()
        store.close()


def processor(
    store: RedisStore, shard: int, scorer: Scorer, clock: EventClock | None = None
) -> ShardProcessor:
    p = ShardProcessor(store, scorer, store.acquire(shard), KINDS, clock or EventClock())
    p.learner = shard_learner(50, shard, store.shard_tally)
    return p


def learned(store: RedisStore) -> dict[str, int]:
    return {k: v for k, v in store.tallies().items() if k.startswith("learn:") and v}


def run(store: RedisStore, messages: dict[int, list[RawMessage]], crash_every: int = 0) -> None:
    """Feed every shard in batches of 40; with ``crash_every``, every that many batches a
    step is computed and thrown away uncommitted (a kill -9 between compute and commit),
    and the shard is taken over by a fresh processor that re-reads offsets and state,
    with the batches the crashed one had not committed delivered again, as Kafka would."""
    scorer = Scorer(load_scoring_config(None))
    for shard, shard_messages in messages.items():
        owner = processor(store, shard, scorer)
        batches = [shard_messages[i : i + 40] for i in range(0, len(shard_messages), 40)]
        done = 0
        while done < len(batches):
            batch = batches[done]
            if crash_every and done % crash_every == crash_every - 1 and owner.offsets:
                clock = copy.deepcopy(owner.clock)  # as it stood before the lost step
                parsed = owner.parse(batch)
                owner.apply(parsed, store.load(shard, parsed.customer_ids))  # never committed
                # The event clock is carried over: a restarted worker's clock starts again
                # from the events it reads, which is the clock's own matter, not learning's.
                owner = processor(store, shard, scorer, clock)  # type: ignore[arg-type]
                # Kafka re-delivers from a committed position at or before Redis' offsets:
                # the previous batch again (skipped) and this one.
                owner.process(batches[done - 1])
            owner.process(batch)
            done += 1


def test_statistics_equal_the_stored_contributions_and_survive_crashes(make_store, messages):
    calm, crashing = make_store("calm"), make_store("crash")
    run(calm, messages)
    run(crashing, messages, crash_every=3)
    stats = learned(calm)
    assert stats == learned(crashing)
    # Every applied event was learned from once (the others are outside the window).
    assert stats["learn:events"] == calm.tallies()["applied"] == crashing.tallies()["applied"]

    # Independently: the sum of every stored customer's contribution, and each
    # contribution is the customer's feature vector as of its own clock.
    scorer = Scorer(load_scoring_config(None))
    expected: dict[str, int] = {}
    states = list(calm.scan())
    for state in states:
        assert state.learned is not None
        contribution = Contribution.from_list(state.learned)
        assert contribution.behaviour is None  # no model was published in this run
        features = customer_features(scorer, state, day_start(state.clock_day))
        assert contribution.units == tuple(round(v * 1_000_000) for v in features.values())
        add_contribution(expected, contribution, 1)
    assert {
        k: v for k, v in stats.items() if k.startswith(("learn:n:", "learn:s:", "learn:q:"))
    } == {k: v for k, v in expected.items() if v}
    assert sum(1 for k in stats if k.startswith("learn:seed:") and k.endswith(":n")) <= 2 * 50
    # Seeds are named by shard and ordinal; the stored seed customers know theirs.
    seeded = [s.learned_seed for s in states if s.learned_seed is not None]
    assert len(seeded) == sum(
        v for k, v in stats.items() if k.startswith("learn:seed:") and k.endswith(":n")
    )


def test_a_commit_retried_after_a_lost_reply_learns_once(make_store, messages):
    store = make_store("retry")
    scorer = Scorer(load_scoring_config(None))
    owner = processor(store, 0, scorer)
    parsed = owner.parse(messages[0][:40])
    step = owner.apply(parsed, store.load(0, parsed.customer_ids))
    store.commit(owner.lease, step.batch)
    once = learned(store)
    store.commit(owner.lease, step.batch)  # the same batch again: a no-op
    assert learned(store) == once


def test_behaviours_show_reports_the_learned_model(make_store, messages, monkeypatch):
    store = make_store("show")
    monkeypatch.setenv("TIERSTREAM_REDIS_URL", store.url)
    monkeypatch.setenv("TIERSTREAM_REDIS_NAMESPACE", store.namespace)
    monkeypatch.setenv("TIERSTREAM_PARTITIONS", str(PARTITIONS))
    runner = CliRunner()
    nothing = runner.invoke(app, ["behaviours", "--show"])
    assert nothing.exit_code == 2 and "no behaviour model yet" in nothing.output

    run(store, messages)
    status = LearningCoordinator(k=3, seeds=50, distance=0.05, every=0).merge(store)
    assert status is not None and status["published"] and status["version"] == 1
    shown = runner.invoke(app, ["behaviours", "--show", "--json"])
    assert shown.exit_code == 0, shown.output
    model = json.loads(shown.stdout)
    assert model["version"] == 1
    assert model["events_learned"] == store.tallies()["applied"]
    assert model["customers_learned"] == len(list(store.scan()))
    assert len(model["segments"]) == 3 and len({s["label"] for s in model["segments"]}) == 3
    assert model["drift"]["published"] is True
    table = runner.invoke(app, ["behaviours", "--show"])
    assert table.exit_code == 0 and "model version 1" in table.output
    # The former name of the command shows the same model.
    alias = runner.invoke(app, ["segments", "--show", "--json"])
    assert alias.exit_code == 0 and json.loads(alias.stdout) == model
