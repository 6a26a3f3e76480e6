"""When the store lost commits it had acknowledged: read those messages from Kafka again.

Redis replicates asynchronously and may fsync only every second: a failover to a replica
that missed the last writes, or a restart that lost them, rolls a shard back to an older
commit. The state and the applied offsets roll back together (one script writes both),
so the shard is consistent, but this worker's Kafka consumer has already fetched past
those messages: carrying on would apply the next ones over a gap and lose the rest.

So a worker remembers the offsets it saw committed per shard; when it takes a shard again
(after any failed step) and the store's applied offsets are behind them, it seeks the
partition back to the store's offsets, drops what it had fetched past the gap, and
applies the messages again. A stored offset behind what this process committed cannot
happen otherwise (offsets only advance, and only through the shard's owner), so a gap
that is not a rollback (a compacted topic, a transaction marker) never triggers this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from streams.deadletters import RawMessage


def lost_offsets(committed: Mapping[str, int] | None, stored: Mapping[str, int]) -> dict[str, int]:
    """topic -> the stored applied offset, for each topic the store holds less of than
    this process saw committed (0 when the store holds none any more)."""
    if not committed:
        return {}
    return {
        topic: stored.get(topic, 0)
        for topic, offset in committed.items()
        if stored.get(topic, 0) < offset
    }


def past_gap(messages: Sequence[RawMessage], resume_at: dict[str, int]) -> list[RawMessage]:
    """``messages`` without those of a topic still waiting for its rewind: a batch whose
    first new message of the topic is beyond ``resume_at`` was fetched before the seek
    (it comes again). A batch that reaches ``resume_at`` clears the topic's entry."""
    kept: list[RawMessage] = []
    firsts: dict[str, int] = {}
    for message in messages:
        start = resume_at.get(message.topic)
        if start is not None and message.offset >= start:
            firsts.setdefault(message.topic, message.offset)
    for topic, first in firsts.items():
        if first == resume_at[topic]:
            del resume_at[topic]
    for message in messages:
        start = resume_at.get(message.topic)
        if start is None or message.offset < start:
            kept.append(message)
    return kept
