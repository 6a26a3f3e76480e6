"""The commit recipe: one step's results in, the Batch one commit writes out."""

from __future__ import annotations

from datetime import UTC, datetime

from scoring.engine import leaving_change
from scoring.events import DeadLetter
from scoring.state import CustomerState
from tierstream.stores.base import CUSTOMERS_TALLY, size_tally
from tierstream.stores.commit_recipe import build_batch, history_entry
from tierstream.stores.outbox_codec import CHANGE_ENTRY, DEAD_LETTER_ENTRY, decode_entry

NOW = datetime(1998, 7, 1, tzinfo=UTC)


def test_a_steps_batch_holds_everything_its_commit_writes_in_order() -> None:
    joined = CustomerState("a", version=1)
    joined.tier = "Gold"
    gone = CustomerState("gone", version=2)
    gone.tier = "Silver"
    change = leaving_change(gone, "inactivity", "test", NOW)
    letter = DeadLetter(
        source_topic="purchases",
        source_partition=0,
        source_offset=3,
        key_base64=None,
        payload_base64="",
        error_kind="bad_json",
        error="not JSON",
        received_at=NOW,
    )
    seen_by_learner: list[dict[str, int]] = []
    batch = build_batch(
        offsets={"purchases": 4},
        applied={"purchases": 2, "engagements": 9},
        states=[joined],
        next_rescore_at=lambda state: NOW,
        unschedule=["gone"],
        dead_letters=[letter],
        changes=[change],
        emitted_at=NOW,
        counts={"applied": 1, "already_applied": 5, "dead_letter:bad_json": 1},
        erasures=[],
        before={},
        learn=lambda batch: seen_by_learner.append(dict(batch.tallies)),
    )
    assert batch.offsets == {"purchases": 4}
    assert batch.expected == {"purchases": 2}  # only the topics this step moves
    assert batch.states == [joined]
    assert batch.schedule == {"gone": None, "a": NOW.timestamp()}
    # Outbox: dead letters first, then the tier changes, in the order they happened.
    assert [decode_entry(entry)[0] for entry in batch.changes] == [DEAD_LETTER_ENTRY, CHANGE_ENTRY]
    assert batch.history == {"gone": [history_entry(change)]}
    # The learner adds its statistics before the changes' tallies are counted.
    assert seen_by_learner == [{}]
    assert batch.tallies == {
        "change:inactivity": 1,
        'flow:tier:["Silver",null]': 1,
        "applied": 1,
        "dead_letter:bad_json": 1,
        CUSTOMERS_TALLY: 1,
        size_tally(("tier", "Gold")): 1,
    }
    assert batch.memberships == {("tier", "Gold"): ([], ["a"])}
