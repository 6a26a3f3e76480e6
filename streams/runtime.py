"""The worker's runtime: its owned shards, their steps and publication, plus counters.

``Runtime`` moves bytes between the Kafka wiring (streams/worker.py) and the step logic
(``ShardLogic``). A per-shard asyncio lock keeps one step at a time per shard, so the
agent and the timer never interleave on a shard. The invariant: a partition's applied
offset only ever advances over messages whose effects are committed. A step that fails is
redone or the shard stops; it is never skipped (streams/failures.py says which, per error).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from faust.types import EventT

from scoring.days import utc_day
from scoring.engine import Scorer
from scoring.events import Cause, EngagementEvent, PurchaseEvent
from scoring.profiles import ProfileUpdate
from scoring.quantiles import population_thresholds
from streams.behaviour_learning import learning_coordinator
from streams.config_follower import ConfigFollower
from streams.deadletters import RawMessage
from streams.failures import Backoff, Outcome, until_done
from streams.learner import shard_learner
from streams.metrics import Metrics
from streams.processor import InputKind, ShardLogic, Step, StepResult
from streams.publisher import Publisher, SendMany
from streams.rollback import lost_offsets, past_gap
from tierstream.behaviours import SnapshotBehaviour
from tierstream.clock import Clock
from tierstream.erasure import ErasureRequest, erasure_salt
from tierstream.published import SNAPSHOT_META, THRESHOLDS_META, Watched, behaviour_snapshot
from tierstream.published import thresholds as parse_thresholds
from tierstream.settings import Settings
from tierstream.stores.base import StateStore
from tierstream.stores.redis_async import AsyncRedisStore

log = logging.getLogger("tierstream.worker")
T = TypeVar("T")

# Redis with appendfsync everysec may lose up to ~2 s of writes if its host crashes;
# committing Kafka offsets this far behind Redis keeps Kafka from ever skipping them.
KAFKA_COMMIT_LAG = 3.0

# A shard not fenced for this long is no longer contended (see Runtime._contention_delay).
CONTENTION_QUIET_SECONDS = 30.0

# Customers re-scored per atomic step after new cut points or a new behaviour model.
RESCORE_CHUNK = 500


@dataclass(slots=True)
class Shard:
    """One owned shard: its step logic under a lease, and its outbox in flight."""

    logic: ShardLogic
    publisher: Publisher
    # topic -> offset the partition was sought back to after the store lost commits;
    # messages fetched past it before the seek are dropped (streams/rollback.py)
    resume_at: dict[str, int] = field(default_factory=dict)


class Runtime:
    """Owned shards, their steps and publication, plus counters, for one worker process."""

    # The step logic of a shard (streams/accounts.py's runtime has the account step's).
    logic_class: type[ShardLogic] = ShardLogic

    def __init__(
        self,
        settings: Settings,
        store: AsyncRedisStore,
        admin_store: StateStore,
        scorer: Scorer,
        clock_factory: Callable[[], Clock],
        send: SendMany,
        owns: Callable[[int], bool] = lambda shard: True,
        commit_positions: Callable[[int, dict[str, int]], Awaitable[Any]] | None = None,
        metrics: Metrics | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
        rewind: Callable[[int, dict[str, int]], Awaitable[Any]] | None = None,
        config_version: int = 0,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.store = store
        # The blocking store, for the rare whole-shard reads (customer ids, population
        # scans, metadata) that run in a thread off the hot path.
        self.admin_store = admin_store
        self.scorer = scorer
        self.clock_factory = clock_factory
        self._send = send
        self._owns = owns
        self._commit_positions = commit_positions
        self._on_fatal = on_fatal
        # Seeks a partition's topics back to offsets (Kafka consumer), see streams/rollback.py.
        self._rewind = rewind
        # shard -> the applied offsets this process last saw committed
        self._applied: dict[int, dict[str, int]] = {}
        self.shards: dict[int, Shard] = {}
        self.stopped: dict[int, str] = {}  # shard -> why it stopped (fatal error)
        # shard -> (backoff, when last fenced), see _contention_delay
        self._contention: dict[int, tuple[Backoff | None, float]] = {}
        # The published cut points and behaviour model, re-read every check period.
        self.published_thresholds = Watched(
            admin_store, THRESHOLDS_META, parse_thresholds, settings.threshold_check_seconds
        )
        self._next_threshold_compute = 0.0
        self.published_behaviours = Watched(
            admin_store, SNAPSHOT_META, behaviour_snapshot, settings.behaviours_check_seconds
        )
        self._swept: dict[int, int] = {}  # shard -> behaviour model version it was swept with
        self.learning = learning_coordinator(settings)  # None unless learn_behaviours
        self.config_follower = ConfigFollower(self, config_version)  # tierstream config apply
        # (monotonic time, applied offsets) per shard, waiting to be old enough to commit
        self._positions: dict[int, deque[tuple[float, dict[str, int]]]] = defaultdict(deque)
        self.locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.counts: Counter[str] = Counter()
        self.event_kinds: dict[str, InputKind] = {
            settings.topic_purchases: PurchaseEvent,
            settings.topic_engagements: EngagementEvent,
            settings.topic_erasures: ErasureRequest,
            settings.topic_profiles: ProfileUpdate,
        }
        self._salt: bytes | None = None  # the namespace's erasure salt, read once

    # ------------------------------------------------------------ ownership
    async def assign(self, shards: Iterable[int]) -> None:
        wanted = set(shards)
        if self.learning is not None and self.scorer.behaviour is None:
            await self._adopt_published_behaviours()
        for shard in list(self.shards):
            if shard not in wanted:
                async with self.locks[shard]:
                    self.shards.pop(shard, None)
                    self._applied.pop(shard, None)
                    log.info("released shard %d", shard)
        for shard in sorted(wanted - set(self.shards)):
            # Acquire now (fencing any previous owner) and publish what a predecessor
            # left in the outbox; a failure here is retried like any step.
            await self._step(shard, _nothing)

    async def _acquire(self, shard: int) -> Shard:
        """Take the shard (fencing any previous owner), read its applied offsets, and send
        again whatever its outbox still holds (a predecessor may have crashed between
        commit and publication, or this worker between sending and trimming)."""
        if self._salt is None:
            self._salt = await self._admin(partial(erasure_salt, self.admin_store))
        lease = await self.store.acquire(shard)
        offsets = await self.store.offsets(shard)
        s = self.settings
        logic = self.logic_class(
            self.scorer,
            lease,
            offsets,
            self.event_kinds,
            self.clock_factory(),
            salt=self._salt,
            erased_count=await self.store.erased_count(shard),
        )
        if self.learning is not None:  # the shard's seed count goes on from where it was
            wanted, half_life = s.learn_seed_customers, s.learn_half_life_days
            logic.learner = await self._admin(
                partial(shard_learner, wanted, shard, self._tally, half_life)
            )
        publisher = Publisher(
            shard,
            self._send,
            s.topic_tier_changes,
            s.topic_dead_letters,
            self._delivered,
            contributions=s.topic_account_contributions,
        )
        head, entries = await self.store.outbox(shard)
        publisher.start_at(head)
        await publisher.publish(head, entries)
        owned = self.shards[shard] = Shard(logic, publisher)
        lost = lost_offsets(self._applied.get(shard), offsets)
        if lost:
            await self._reread(owned, lost)
        log.info(
            "acquired shard %d (epoch %d), %d outbox entries re-sent",
            shard,
            lease.epoch,
            len(entries),
        )
        return owned

    async def _reread(self, owned: Shard, lost: dict[str, int]) -> None:
        """The store lost commits it had acknowledged: read them from Kafka again."""
        shard = owned.logic.shard
        log.error(
            "shard %d: the store's applied offsets went back (now %s, committed before: %s): "
            "a Redis failover or restart lost its last writes; reading them again from Kafka",
            shard,
            lost,
            self._applied.get(shard),
        )
        self.counts["store_rollbacks"] += 1
        self._applied[shard] = owned.logic.offsets
        self._positions.pop(shard, None)  # never commit to Kafka what Redis no longer holds
        if self._rewind is not None:
            await self._rewind(shard, lost)
            owned.resume_at.update(lost)

    # ---------------------------------------------------------------- steps
    async def handle(self, events: Sequence[EventT[Any]]) -> None:
        by_shard: dict[int, list[RawMessage]] = defaultdict(list)
        for event in events:
            message = event.message
            by_shard[message.partition].append(
                RawMessage(
                    message.topic, message.partition, message.offset, message.key, message.value
                )
            )
        await self.handle_messages(by_shard)

    async def handle_messages(self, by_shard: dict[int, list[RawMessage]]) -> None:
        # Shards are independent (own lock, own commit, own outbox): while one waits for
        # Redis, another computes.
        if len(by_shard) == 1:
            [(shard, messages)] = by_shard.items()
            await self._step(shard, partial(self._measured, messages=messages))
            return
        await asyncio.gather(
            *(
                self._step(shard, partial(self._measured, messages=messages))
                for shard, messages in by_shard.items()
            )
        )

    async def _measured(self, owned: Shard, messages: Sequence[RawMessage]) -> StepResult:
        """``_process``, then the latency from each record's Kafka time to its change."""
        result = await self._process(owned, messages)
        if self.metrics is not None and result.changes:
            received = {
                m.key.decode("utf-8", "replace"): m.timestamp
                for m in messages
                if m.key is not None and m.timestamp is not None
            }
            self.metrics.observe_change_latency(result.changes, received, time.time())
        return result

    async def _process(self, owned: Shard, messages: Sequence[RawMessage]) -> StepResult:
        if owned.resume_at:
            messages = past_gap(messages, owned.resume_at)
        parsed = owned.logic.parse(messages)
        if not parsed.offsets:
            return parsed.result  # everything was applied before (a redelivery)
        logic = owned.logic
        states = await self.store.load(logic.shard, parsed.customer_ids)
        markers: dict[str, str] = {}
        digests = logic.marker_digests(parsed, states)
        if digests:  # only shards that erased someone pay for the lookup
            found = await self.store.erased(logic.shard, list(digests.values()))
            markers = {c: m.decode() for c, m in zip(digests, found, strict=True) if m is not None}
        return await self._commit(owned, logic.apply(parsed, states, markers))

    async def _advance_due(self, owned: Shard) -> StepResult:
        logic = owned.logic
        due = await self.store.due(logic.shard, logic.clock.now().timestamp(), 1000)
        if not due:
            return StepResult()
        result = await self._commit(
            owned, logic.advance(due, await self.store.load(logic.shard, due))
        )
        if self.metrics is not None:
            self.metrics.observe_timer_lateness(result.changes, logic.clock.now())
        return result

    async def _rescore(
        self, owned: Shard, ids: Sequence[str], cause: Cause, because: str
    ) -> StepResult:
        states = await self.store.load(owned.logic.shard, ids)
        return await self._commit(owned, owned.logic.rescore(states, cause, because))

    async def _commit(self, owned: Shard, step: Step) -> StepResult:
        """Commit ``step`` (trimming what Kafka has acknowledged), then send its entries."""
        publisher = owned.publisher
        trim_to = await publisher.settle()
        entries = step.batch.changes
        started = time.perf_counter()
        end = await self.store.commit(owned.logic.lease, step.batch, trim_to)
        if self.metrics is not None:
            self.metrics.redis_commit_seconds.observe(time.perf_counter() - started)
        publisher.trimmed = max(publisher.trimmed, trim_to)
        owned.logic.committed(step)
        self._applied[owned.logic.shard] = owned.logic.offsets
        await publisher.publish(end - len(entries), entries)
        return step.result

    async def _step(self, shard: int, work: Callable[[Shard], Awaitable[StepResult]]) -> None:
        """Run ``work`` on the shard until it is done: every failure is waited out and the
        step redone from the store, the shard is handed over, or the shard stops."""
        async with self.locks[shard]:
            started = 0.0

            async def attempt() -> StepResult | None:
                nonlocal started
                if shard in self.stopped:
                    return None
                owned = self.shards.get(shard)
                if owned is None and not self._owns(shard):
                    # Buffered messages of a partition handed to another worker: it
                    # re-reads them from the offsets Redis holds; nothing is lost here.
                    self.counts["not_owned"] += 1
                    return None
                started = time.monotonic()
                if owned is None:
                    owned = await self._acquire(shard)
                return await work(owned)

            result = await until_done(attempt, partial(self._step_failed, shard))
            if result is not None:
                self.counts.update(result.counts)
                if self.metrics is not None:
                    self.metrics.observe_step(shard, time.monotonic() - started, result)

    def _step_failed(
        self, shard: int, exc: BaseException, outcome: Outcome, backoff: Backoff
    ) -> float:
        """What a failed step of ``shard`` leads to; returns the wait before the next attempt
        (which finds the shard stopped after a fatal error)."""
        # Whatever happened, the in-memory view of the shard may be stale (a commit whose
        # reply was lost, a lease fenced): the next attempt rebuilds it from Redis.
        self.shards.pop(shard, None)
        if outcome is Outcome.FATAL:
            self._stop_shard(shard, exc)
            return 0.0
        delay = self._contention_delay(shard) if outcome is Outcome.REDO else backoff.next()
        self.counts[f"retries:{outcome.value}"] += 1
        log.warning(
            "shard %d: step failed (%s: %s); redoing it from the store in %.2fs",
            shard,
            type(exc).__name__,
            exc,
            delay,
        )
        return delay

    def _contention_delay(self, shard: int) -> float:
        """How long to wait before taking the shard back after being fenced.

        Two owners of one shard (a rebalance in flight, or a split brain: two consumer
        groups on one namespace) fence each other on every step. Each would redo its step
        at once and fence the other again, and neither would hold the shard long enough to
        trim its outbox. So the wait grows with each fencing of this shard in a row (with
        jitter), and only a quiet spell resets it: one owner then keeps the shard for
        seconds at a time.
        """
        now = time.monotonic()
        backoff, last = self._contention.get(shard, (None, 0.0))
        if backoff is None or now - last > CONTENTION_QUIET_SECONDS:
            backoff = Backoff()
        self._contention[shard] = (backoff, now)
        return backoff.next()

    def _stop_shard(self, shard: int, exc: BaseException) -> None:
        why = f"{type(exc).__name__}: {exc}"
        self.stopped[shard] = why
        log.error("shard %d stopped: %s", shard, why, exc_info=exc)
        if self.metrics is not None:
            self.metrics.stopped[shard] = why
        if self._on_fatal is not None:
            self._on_fatal(exc)

    # --------------------------------------------------------------- the timer
    async def tick(self) -> None:
        refreshes = (
            self.config_follower.follow_config,
            self.refresh_thresholds,
            self.refresh_behaviours,
            self.learn_behaviours,
        )
        for refresh in refreshes:
            try:
                await refresh()
            except Exception as exc:  # noqa: BLE001 - no input is at stake: try next tick
                log.warning("%s failed (%r); trying again next tick", refresh.__name__, exc)
        for shard in list(self.shards):
            await self._step(shard, self._advance_due)
            await self._step(shard, self._trim_published)
            owned = self.shards.get(shard)
            if owned is not None and self._commit_positions is not None and self._owns(shard):
                # Kafka's committed offsets only ever repeat what Redis said was applied a
                # few seconds ago, so a restart, a rebalance or even a Redis host crash that
                # loses its last second (appendfsync everysec) re-delivers but never skips.
                now = time.monotonic()
                history = self._positions[shard]
                history.append((now, dict(owned.logic.offsets)))
                durable = None
                while history and now - history[0][0] >= KAFKA_COMMIT_LAG:
                    durable = history.popleft()[1]
                if durable is not None:
                    await self._commit_positions(shard, durable)

    async def _trim_published(self, owned: Shard) -> StepResult:
        """Re-send failed deliveries and trim what Kafka acknowledged, for an idle shard."""
        publisher = owned.publisher
        trim_to = await publisher.settle()
        if trim_to > publisher.trimmed:
            await self.store.trim(owned.logic.lease, trim_to)
            publisher.trimmed = trim_to
        return StepResult()

    def _delivered(self, count: int) -> None:
        self.counts["published"] += count
        if self.metrics is not None:
            self.metrics.observe_publish(count)

    async def refresh_thresholds(self) -> None:
        """Quintile scoring: the owner of shard 0 recomputes the cut points from the whole
        population every ``threshold_refresh_seconds`` and publishes them, versioned, in the
        store; every worker adopts a newer version and re-scores its shards' customers
        (cause ``threshold_update``). Fixed cut points need none of this."""
        if self.scorer.config.scores.method != "quintiles":
            return
        watched = self.published_thresholds
        if not watched.claim():
            return
        now = time.monotonic()
        current = watched.take(await self._admin(watched.read_raw))
        leader = self.shards.get(0)
        if leader is not None and now >= self._next_threshold_compute:
            self._next_threshold_compute = now + self.settings.threshold_refresh_seconds
            states = await self._admin(lambda: list(self.admin_store.scan()))
            version = max(self.scorer.thresholds.version, current.version if current else 0) + 1
            today = utc_day(leader.logic.clock.now())
            fresh = population_thresholds(self.scorer, states, today, version)
            if fresh.version == version:  # an empty population keeps the old cut points
                payload = json.dumps(fresh.to_dict()).encode()
                await self._admin(partial(self.admin_store.set_meta, THRESHOLDS_META, payload))
                current = fresh
                log.info(
                    "published score cut points version %d (%d customers)", version, len(states)
                )
        if current is None or current.version <= self.scorer.thresholds.version:
            return
        because = f"score cut points recomputed from the population (version {current.version})"
        for shard in await self._adopt(self.scorer.with_thresholds(current)):
            await self._rescore_shard(shard, "threshold_update", because)
        self.counts["threshold_updates"] += 1

    def _tally(self, shard: int, name: str) -> int:
        read = getattr(self.admin_store, "shard_tally", None)
        return int(read(shard, name)) if read is not None else 0

    async def learn_behaviours(self) -> None:
        """Behaviours learned from the stream: merge and publish (streams/behaviour_learning.py)."""
        if self.learning is not None:
            await self.learning.tick(self)

    async def _adopt(self, scorer: Scorer) -> list[int]:
        """Score with ``scorer`` from now on; the shards whose logic now uses it."""
        self.scorer = scorer
        adopted = []
        for shard in list(self.shards):
            async with self.locks[shard]:
                owned = self.shards.get(shard)
                if owned is not None:
                    owned.logic.scorer = scorer
                    adopted.append(shard)
        return adopted

    async def _rescore_shard(self, shard: int, cause: Cause, because: str) -> bool:
        """Re-score every customer of ``shard``, ``RESCORE_CHUNK`` per atomic step (after
        new cut points or a new behaviour model). True if this worker still holds the shard."""
        ids = await self._admin(partial(self.admin_store.customer_ids, shard))
        for start in range(0, len(ids), RESCORE_CHUNK):
            chunk = ids[start : start + RESCORE_CHUNK]
            await self._step(shard, partial(self._rescore, ids=chunk, cause=cause, because=because))
        return shard in self.shards

    async def _adopt_published_behaviours(self) -> None:
        """Score with the published behaviour model from the first batch on, not from the
        first timer tick: a learning worker's steps assign (and learn) with the model in
        force, so a restarted worker must not learn its first customers as unassigned.
        Sweeps are left to ``refresh_behaviours``, which finds the version adopted."""
        watched = self.published_behaviours
        try:
            raw = await self._admin(watched.read_raw)
        except Exception as exc:  # noqa: BLE001 - the next tick adopts it instead
            log.warning("reading the behaviour model failed (%r); adopting it next tick", exc)
            return
        snapshot = watched.take(raw)
        if snapshot is not None:
            await self._adopt(self.scorer.with_behaviour(SnapshotBehaviour(snapshot)))
            log.info("adopted behaviour model version %d", snapshot.version)

    async def refresh_behaviours(self) -> None:
        """Adopt a newer behaviour snapshot and re-assign every customer.

        Snapshots are learned in one place (``tierstream behaviours``) and published,
        versioned, in the store. Every ``behaviours_check_seconds`` each worker looks for a
        newer version, re-scores with it, and sweeps the shards it owns (cause
        ``model_update`` for every customer the new model moves). A per-shard marker in
        the store records the version a shard was fully swept with, so a sweep cut short
        by a crash or a rebalance is finished by the shard's next owner.
        """
        watched = self.published_behaviours
        if not watched.claim():
            return
        snapshot = watched.take(await self._admin(watched.read_raw))
        if snapshot is None:
            return
        adopted = self.scorer.behaviour
        if adopted is None or snapshot.version > adopted.version:
            await self._adopt(self.scorer.with_behaviour(SnapshotBehaviour(snapshot)))
            log.info("adopted behaviour model version %d", snapshot.version)
            self.counts["model_updates"] += 1
        assert self.scorer.behaviour is not None
        version = self.scorer.behaviour.version
        because = f"behavioural segments re-learned (segment model v{version})"
        await self.sweep("segments_swept", version, self._swept, "model_update", because)

    async def sweep(
        self, marker: str, version: int, swept: dict[int, int], cause: Cause, because: str
    ) -> None:
        """Re-score every owned shard not yet swept with ``version``.

        The store's per-shard marker (``<marker>:<shard>``) records the version a shard was
        fully swept with, so a sweep cut short by a crash or a rebalance is finished by the
        shard's next owner; ``swept`` remembers the markers this process already saw.
        """
        for shard in list(self.shards):
            if swept.get(shard, 0) >= version:
                continue  # known from an earlier check: markers only ever grow
            name = f"{marker}:{shard}"
            done = await self._admin(partial(self.admin_store.get_meta, name))
            if not (done is not None and int(done) >= version):
                if not await self._rescore_shard(shard, cause, because):
                    continue  # lost the shard: its new owner finishes the sweep
                payload = str(version).encode()
                await self._admin(partial(self.admin_store.set_meta, name, payload))
            swept[shard] = version

    async def _admin(self, call: Callable[[], T]) -> T:
        """A blocking store call off the hot path, in a thread; transient errors are waited
        out, anything else propagates to the timer (which logs it and tries next tick)."""
        return await until_done(partial(asyncio.to_thread, call), self._admin_failed)

    def _admin_failed(self, exc: BaseException, outcome: Outcome, backoff: Backoff) -> float:
        if outcome is not Outcome.TRANSIENT:
            raise exc
        self.counts["store_retries"] += 1
        delay = backoff.next()
        log.warning("store call failed (%s); retrying in %.2fs", exc, delay)
        return delay


async def _nothing(owned: Shard) -> StepResult:
    """A step that only makes sure the shard is acquired."""
    return StepResult()
