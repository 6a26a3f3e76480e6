"""Backfill: a history file straight into the Redis store, through the worker's own commit.

The events are put in event-time order (tierstream/ordering.py: an external sort, same
order on every run), grouped per shard (``shard_for``: murmur2 of the customer id, the
partition Kafka would put the event on), and applied by the worker's step logic
(``ShardLogic`` under an event clock) in batches that are committed with the store's
fenced, atomic commit, exactly as the worker commits a fetch from Kafka.

Checkpoint. Each commit also records, in the shard's applied offsets, how far into the
ordered file the shard has got: ``o:backfill:<source id>`` = position of the shard's
last applied event + 1. State and checkpoint are written by one script, so after a
kill -9 a new run over the same file skips exactly the events the shard committed and
applies the rest: nothing is lost or counted twice. The source id is a digest of the
file's path, size, modification time and format.

Handing over to the worker. The states carry their remembered event ids, so events the
backfill applied that the worker later reads from Kafka count once (duplicates). Tier
changes found on the way go to the customers' recent history and the running totals,
but not to the outbox (historical moves are not news) unless ``queue_changes`` is set.
Run it with the workers stopped: taking the shards fences any worker that holds them.

Accounts. Given an ``AccountSink`` (tierstream/backfill_accounts.py), each commit's
contribution updates are applied to the account shards before the customer commit, so
the accounts are those the worker would have built; without one, they are dropped.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from scoring.engine import Scorer
from scoring.events import InputEvent
from streams.deadletters import RawMessage
from streams.processor import InputKind, Parsed, ShardLogic, StepResult
from tierstream.backfill_accounts import AccountSink
from tierstream.clock import EventClock
from tierstream.erasure import erasure_salt
from tierstream.stores.base import shard_for
from tierstream.stores.outbox_codec import CONTRIBUTION_ENTRY, DEAD_LETTER_ENTRY
from tierstream.stores.redis import RedisStore

# Events per atomic commit (per shard), as the worker's default fetch.
BATCH_EVENTS = 500
CHECKPOINT_PREFIX = "backfill:"

Progress = Callable[[int, int | None], None]  # (events done, total once known)


@dataclass
class BackfillStats:
    events: int = 0  # events of the file, in order (rejects not included)
    already: int = 0  # skipped: committed by an earlier run (resume)
    applied: int = 0
    duplicates: int = 0
    outside_window: int = 0
    dead_letters: int = 0  # events of customers erased with suppression
    changes: int = 0
    commits: int = 0
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def source_id(path: Path, fmt: str) -> str:
    """Identity of a source file for its checkpoint: path, size, mtime and format."""
    info = path.stat()
    text = f"{path.resolve()}\0{info.st_size}\0{info.st_mtime_ns}\0{fmt}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


class Backfill:
    """One backfill run into ``store`` (see the module docstring)."""

    def __init__(
        self,
        store: RedisStore,
        scorer: Scorer,
        source: str,
        *,
        batch_events: int = BATCH_EVENTS,
        queue_changes: bool = False,
        accounts: AccountSink | None = None,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.scorer = scorer
        self.topic = CHECKPOINT_PREFIX + source
        self.batch_events = batch_events
        self.queue_changes = queue_changes
        self.stats = BackfillStats()
        salt = erasure_salt(store)
        self.shards: dict[int, ShardLogic] = {}
        kinds: dict[str, InputKind] = {}  # events come parsed: never looked up
        for shard in range(store.partitions):
            lease = store.acquire(shard)  # fences any other writer of the shard
            self.shards[shard] = ShardLogic(
                scorer,
                lease,
                store.offsets(shard),
                kinds,
                EventClock(),
                salt=salt,
                erased_count=store.erased_count(shard),
            )

    def checkpoint(self, shard: int) -> int:
        """Position in the ordered file before which this shard has everything."""
        return self.shards[shard].offsets.get(self.topic, 0)

    def run(self, events: Iterable[InputEvent], progress: Progress | None = None) -> BackfillStats:
        started = time.perf_counter()
        pending: dict[int, list[tuple[int, InputEvent]]] = defaultdict(list)
        partitions = self.store.partitions
        total: int | None = None
        count = getattr(events, "count", None)
        for position, event in enumerate(events):
            if position == 0:
                total = getattr(events, "count", count)
            self.stats.events += 1
            shard = shard_for(event.customer_id, partitions)
            if position < self.checkpoint(shard):
                self.stats.already += 1
                continue
            batch = pending[shard]
            batch.append((position, event))
            if len(batch) >= self.batch_events:
                self._commit(shard, batch)
                pending[shard] = []
            if progress is not None and position % 2048 == 0:
                progress(position, total)
        for shard, batch in pending.items():
            if batch:
                self._commit(shard, batch)
        self.stats.seconds = time.perf_counter() - started
        if progress is not None:
            progress(self.stats.events, self.stats.events)
        return self.stats

    def _commit(self, shard: int, batch: list[tuple[int, InputEvent]]) -> None:
        logic = self.shards[shard]
        events = [event for _, event in batch]
        # Stand-ins for the Kafka messages the events did not come in: only a dead letter
        # (a suppressed customer's event) names its source, by position in the file.
        origins = [RawMessage(self.topic, shard, position, None, None) for position, _ in batch]
        parsed = Parsed(
            events=list(events),
            offsets={self.topic: batch[-1][0] + 1},
            result=StepResult(),
            emitted_at=None,
            origins=origins,
        )
        states = self.store.load(shard, parsed.customer_ids)
        digests = logic.marker_digests(parsed, states)
        markers: dict[str, str] = {}
        if digests:
            found = self.store.erased(shard, list(digests.values()))
            markers = {c: m.decode() for c, m in zip(digests, found, strict=True) if m}
        step = logic.apply(parsed, states, markers)
        if self.accounts is not None:
            # Accounts first: after a crash here the customers' events are applied again
            # and make the same updates, which the account step recognises (seq).
            self.accounts.apply(step.batch.changes, queue_changes=self.queue_changes)
            step.batch.changes = [e for e in step.batch.changes if e[:1] != CONTRIBUTION_ENTRY]
        if not self.queue_changes:
            step.batch.changes = [e for e in step.batch.changes if e[:1] == DEAD_LETTER_ENTRY]
        self.store.commit(logic.lease, step.batch)
        logic.committed(step)
        counts = step.result.counts
        self.stats.applied += counts["applied"]
        self.stats.duplicates += counts["duplicate"]
        self.stats.outside_window += counts["outside_window"]
        self.stats.dead_letters += sum(v for k, v in counts.items() if k.startswith("dead_letter:"))
        self.stats.changes += len(step.result.changes)
        self.stats.commits += 1
