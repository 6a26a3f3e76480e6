"""Acceptance: the replay's RFM equals an independent pandas computation, customer by customer."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime

import pytest

from scoring.config import ScoringConfig
from scoring.engine import Change, Scorer
from tests.reference import batch_rfm, load_cdnow
from tests.rfm_compare import rfm_mismatches
from tierstream.readers import bundled_cdnow_path, read_events
from tierstream.replay import ReplayResult, ReplayStats, collect, replay

pytestmark = pytest.mark.slow

CASES = [
    (date(1998, 7, 1), 365),
    (date(1998, 7, 1), None),
    (date(1998, 1, 1), 365),
    (date(1997, 10, 15), 90),
]


@pytest.fixture(scope="module")
def reference_frame():
    return load_cdnow()


@pytest.fixture(scope="module")
def cdnow_events():
    stats = ReplayStats()
    events = collect(read_events(bundled_cdnow_path(), "cdnow"), stats, strict=False)
    assert stats.rejects == [], "the bundled CDNOW file parses cleanly (header skipped)"
    assert len(events) == 69_659
    return events


def run(events, config: ScoringConfig, as_of: date) -> tuple[ReplayResult, list[Change]]:
    changes: list[Change] = []
    moment = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    result = replay(events, Scorer(config), as_of=moment, emit=changes.append, stats=ReplayStats())
    return result, changes


@pytest.mark.parametrize(("as_of", "window"), CASES)
def test_replay_matches_batch_reference(
    cdnow_events, reference_frame, no_hysteresis_config, as_of, window
):
    config = no_hysteresis_config.model_copy(update={"window_days": window})
    result, _ = run(cdnow_events, config, as_of)
    expected = batch_rfm(reference_frame, as_of, window)
    records = {r["customer_id"]: r for r in map(result.scorer.record, result.states.values())}
    assert set(records) == set(expected.index)
    # Without hysteresis the scores are a pure function of the values.
    mismatches = rfm_mismatches(expected, records, result.scorer.thresholds)
    assert mismatches == [], f"{len(mismatches)} customers differ, e.g. {mismatches[:3]}"


def test_change_chains_are_consistent_and_end_at_stored_tier(cdnow_events, default_config):
    result, changes = run(cdnow_events, default_config, date(1998, 7, 1))
    by_customer: dict[str, list[Change]] = defaultdict(list)
    for change in changes:
        by_customer[change.customer_id].append(change)
    assert len(by_customer) == len(result.states)
    for customer_id, chain in by_customer.items():
        assert [c.version for c in chain] == list(range(1, len(chain) + 1))
        assert chain[0].previous_tier is None and chain[0].previous_segment is None
        for before, after in zip(chain, chain[1:], strict=False):
            assert after.previous_tier == before.new_tier
            assert after.previous_segment == before.new_segment
            assert after.occurred_at >= before.occurred_at
        state = result.states[customer_id]
        assert (chain[-1].new_tier, chain[-1].new_segment) == (state.tier, state.segment)
        assert chain[-1].version == state.version
    causes = {c.cause for c in changes}
    assert {"purchase", "inactivity"} <= causes
    assert len({c.event_id for c in changes}) == len(changes)


def test_replay_is_deterministic(cdnow_events, default_config):
    _, first = run(cdnow_events[:20_000], default_config, date(1997, 6, 1))
    _, second = run(cdnow_events[:20_000], default_config, date(1997, 6, 1))
    assert [c.to_json() for c in first] == [c.to_json() for c in second]


def test_streamed_replay_with_spilled_runs_equals_the_in_memory_one(
    cdnow_events, default_config, monkeypatch
):
    """The external sort (7 runs of 10,000 events here) changes nothing: same states, same
    changes in the same order, as the replay of the list sorted in memory."""
    from tierstream import ordering  # noqa: PLC0415

    as_of = date(1998, 7, 1)
    in_memory, expected = run(cdnow_events, default_config, as_of)
    monkeypatch.setattr(ordering, "CHUNK_EVENTS", 10_000)
    streamed, changes = run(iter(cdnow_events), default_config, as_of)
    assert [c.to_json() for c in changes] == [c.to_json() for c in expected]
    assert {k: s.to_dict() for k, s in streamed.states.items()} == {
        k: s.to_dict() for k, s in in_memory.states.items()
    }
