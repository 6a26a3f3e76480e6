"""streams/rollback.py: telling a store that lost commits from one that moved on, and
dropping what was fetched past the gap until the re-read reaches it."""

from __future__ import annotations

from streams.deadletters import RawMessage
from streams.rollback import lost_offsets, past_gap


def messages(topic: str, *offsets: int) -> list[RawMessage]:
    return [RawMessage(topic, 0, offset, b"k", b"v") for offset in offsets]


def test_only_offsets_behind_what_this_process_committed_are_lost() -> None:
    assert lost_offsets(None, {"p": 5}) == {}
    assert lost_offsets({}, {}) == {}
    assert lost_offsets({"p": 10, "e": 4}, {"p": 10, "e": 7}) == {}  # moved on: fine
    assert lost_offsets({"p": 10, "e": 4}, {"p": 6, "e": 4}) == {"p": 6}
    assert lost_offsets({"p": 10}, {}) == {"p": 0}  # the store lost everything


def test_messages_past_the_gap_are_dropped_until_the_reread_arrives() -> None:
    resume_at = {"p": 6}
    # Fetched before the seek: starts past the gap, dropped; other topics pass.
    kept = past_gap(messages("p", 10, 11) + messages("e", 3), resume_at)
    assert [(m.topic, m.offset) for m in kept] == [("e", 3)]
    assert resume_at == {"p": 6}
    # Below the gap passes (the worker skips what is applied); the re-read clears it.
    kept = past_gap(messages("p", 5, 6, 7), resume_at)
    assert [m.offset for m in kept] == [5, 6, 7]
    assert resume_at == {}
    assert [m.offset for m in past_gap(messages("p", 12), resume_at)] == [12]
