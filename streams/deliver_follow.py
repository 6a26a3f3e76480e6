"""``tierstream deliver`` follows the published scoring config, as the workers do.

The subscriptions delivered are those of the version ``tierstream config apply`` put in
force (the local file only while nothing is published, or while Redis cannot say). Every
``config_check_seconds`` the published version is read again; the running subscriptions
are then reconciled with the version's:

- a removed subscription's loop is stopped: it finishes the batch in hand and commits its
  offsets (streams/deliver.py commits only after delivery), so stopping loses nothing;
- a changed one (its ``when``, topic or webhook) is stopped so, then started again with
  the new definition in the same consumer group: it goes on from the committed offsets,
  and its counters go on from where they were;
- an added one gets a consumer group of its own, starting where ``--start`` says;
- the others keep running, untouched.

A subscription that cannot start (its webhook's secret variable is unset, its topic does
not exist) is refused with one line and not delivered, the others run on; it is tried
again with the next version. A Kafka error starting one is logged and tried again at the
next check. A Redis error reading the version is logged once and retried at every check,
never fatal. Each change is one log line ("subscription X added by config version N").
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka.errors import KafkaError
from pydantic import ValidationError
from redis.exceptions import RedisError

from streams.deliver import (
    Counts,
    DeliverySetupError,
    Endpoint,
    SubscriptionLoop,
    report_counts,
    webhook_secret,
)
from tierstream.config_versions import PublishedConfig
from tierstream.published import CONFIG_META, MetaReader, Watched

if TYPE_CHECKING:
    from aiohttp import ClientSession

    from scoring.reactions import Subscription
    from tierstream.settings import Settings

log = logging.getLogger("tierstream.deliver")

COUNT_LINES_EVERY = 10.0  # seconds between the per-subscription count lines

# A subscription's name -> its consumer on tier-changes, not started yet.
ConsumerFactory = Callable[[str], Any]


@dataclass(frozen=True)
class SubscriptionDiff:
    """What turns the running subscriptions into the wanted ones."""

    added: tuple[Subscription, ...] = ()
    changed: tuple[Subscription, ...] = ()  # the new definitions
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def diff_subscriptions(
    running: Mapping[str, Subscription], wanted: Sequence[Subscription]
) -> SubscriptionDiff:
    """Subscriptions are matched by name; any other difference makes one changed."""
    names = {subscription.name for subscription in wanted}
    return SubscriptionDiff(
        added=tuple(s for s in wanted if s.name not in running),
        changed=tuple(s for s in wanted if s.name in running and running[s.name] != s),
        removed=tuple(name for name in running if name not in names),
    )


def missing_topics(existing: set[str], needed: Sequence[str | None]) -> str | None:
    """The start-up error for topics that do not exist, or None."""
    missing = [topic for topic in needed if topic is not None and topic not in existing]
    if not missing:
        return None
    return f"topic(s) {', '.join(missing)} do not exist: run `tierstream topics create`"


@dataclass
class _Running:
    loop: SubscriptionLoop
    task: asyncio.Task[None]
    stopping: asyncio.Event


class RunningSubscriptions:
    """The subscription loops of this process, started and stopped one by one."""

    def __init__(
        self,
        make_consumer: ConsumerFactory,
        producer: Any,
        session: ClientSession,
        settings: Settings,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.make_consumer = make_consumer
        self.producer = producer
        self.session = session
        self.settings = settings
        self.environ = environ
        self.loops: list[SubscriptionLoop] = []  # live: the metrics and count lines read it
        self._running: dict[str, _Running] = {}
        self.failure = asyncio.Event()  # a loop ended on an error: the process stops
        self.error: BaseException | None = None

    def subscriptions(self) -> dict[str, Subscription]:
        return {name: running.loop.subscription for name, running in self._running.items()}

    async def start(
        self, subscription: Subscription, secret: bytes | None, counts: Counts | None = None
    ) -> None:
        """Start one loop; DeliverySetupError when a topic it needs does not exist."""
        consumer = self.make_consumer(subscription.name)
        try:
            await consumer.start()
            settings = self.settings
            needed = [settings.topic_tier_changes, settings.topic_dead_letters, subscription.topic]
            problem = missing_topics(await consumer.topics(), needed)
            if problem is not None:
                raise DeliverySetupError(problem)
        except BaseException:
            await consumer.stop()  # release its connections before the error is told
            raise
        hook = subscription.webhook
        endpoint = None
        if hook is not None:
            assert secret is not None, "a webhook's secret is read before its loop starts"
            endpoint = Endpoint(subscription.name, hook, secret, self.session)
        loop = SubscriptionLoop(
            subscription, consumer, self.producer, endpoint, self.settings.topic_dead_letters
        )
        if counts is not None:
            loop.counts = counts  # a changed subscription's counters go on (no reset)
        stopping = asyncio.Event()
        task = asyncio.create_task(loop.run(stopping), name=f"deliver-{subscription.name}")
        task.add_done_callback(self._ended)
        self._running[subscription.name] = _Running(loop, task, stopping)
        self.loops.append(loop)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        if self.error is None:
            self.error = task.exception()
        self.failure.set()

    async def stop(self, name: str) -> Counts:
        """Stop one loop after its batch in hand is delivered and committed."""
        running = self._running.pop(name)
        running.stopping.set()
        try:
            await asyncio.wait([running.task])  # an error it ended on is in self.error
        finally:
            await running.loop.consumer.stop()  # leaves the group: a successor joins at once
            self.loops.remove(running.loop)
        return running.loop.counts

    async def stop_all(self) -> None:
        for running in self._running.values():
            running.stopping.set()
        await asyncio.gather(*(self.stop(name) for name in list(self._running)))

    async def reconcile(self, wanted: Sequence[Subscription], because: str) -> list[Subscription]:
        """Run the ``wanted`` subscriptions; those refused (a missing secret or topic)."""
        diff = diff_subscriptions(self.subscriptions(), wanted)
        # Stopped together: one still retrying a webhook holds up none of the others.
        stopping = [*diff.removed, *(s.name for s in diff.changed)]
        counts = dict(zip(stopping, await asyncio.gather(*map(self.stop, stopping)), strict=True))
        for name in diff.removed:
            log.info("subscription %s removed by %s", name, because)
        refused: list[Subscription] = []
        for subscription in diff.changed:
            if not await self._start_or_refuse(
                subscription, counts[subscription.name], "changed", because
            ):
                refused.append(subscription)
        for subscription in diff.added:
            if not await self._start_or_refuse(subscription, None, "added", because):
                refused.append(subscription)
        return refused

    async def _start_or_refuse(
        self, subscription: Subscription, counts: Counts | None, how: str, because: str
    ) -> bool:
        """Start it and say so; False when refused for good (until the next version)."""
        try:
            await self.start(subscription, webhook_secret(subscription, self.environ), counts)
        except DeliverySetupError as exc:
            log.error(
                "subscription %s %s by %s is not delivered: %s",
                subscription.name,
                how,
                because,
                exc,
            )
            return False
        except KafkaError as exc:  # an outage: the next check tries again
            log.warning(
                "subscription %s %s by %s not started (%s: %s); retrying",
                subscription.name,
                how,
                because,
                type(exc).__name__,
                exc,
            )
            return True
        log.info("subscription %s %s by %s", subscription.name, how, because)
        return True


class PublishedSubscriptions:
    """Reads the published config every ``config_check_seconds`` and reconciles."""

    def __init__(
        self,
        store: MetaReader,
        settings: Settings,
        version: int,
        subscriptions: Sequence[Subscription],
        running: RunningSubscriptions,
    ) -> None:
        self.settings = settings
        self.every = settings.config_check_seconds
        self.watched = Watched(store, CONFIG_META, PublishedConfig.from_bytes)
        self.version = version  # the published version followed (0: the local file)
        self.wanted = tuple(subscriptions)
        self.running = running
        self.refused: dict[str, Subscription] = {}  # refused definitions of this version
        self._unreadable = 0  # the version last found not valid here, said once
        self._unparsed: bytes | None = None  # the bytes last found not to parse, said once
        self._redis_down = False
        self._idle_said = version if not self.wanted else -1  # the version said idle

    def because(self) -> str:
        return f"config version {self.version}" if self.version else "the local config"

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), self.every)
            except TimeoutError:
                await self.check()

    async def check(self) -> None:
        entry = await self._read()
        newer = entry is not None and entry.version > self.version
        if entry is not None and newer and entry.version != self._unreadable:
            self._adopt(entry)
        wanted = [s for s in self.wanted if self.refused.get(s.name) != s]
        for subscription in await self.running.reconcile(wanted, self.because()):
            self.refused[subscription.name] = subscription
        if not self.wanted and self._idle_said != self.version:
            self._idle_said = self.version  # once the last loop has stopped: said true
            say_idle(self.because())

    async def _read(self) -> PublishedConfig | None:
        try:
            raw = await asyncio.to_thread(self.watched.read_raw)
        except (RedisError, OSError) as exc:
            if not self._redis_down:
                log.warning(
                    "published config not read (%s); keeping %s, retrying every %gs",
                    exc,
                    self.because(),
                    self.every,
                )
            self._redis_down = True
            return None
        if self._redis_down:
            log.info("published config readable again")
            self._redis_down = False
        try:
            return self.watched.take(raw)
        except (ValueError, KeyError, TypeError) as exc:
            if raw != self._unparsed:
                log.error("the published config in Redis does not parse (%s)", exc)
            self._unparsed = raw
            return None

    def _adopt(self, entry: PublishedConfig) -> None:
        try:
            config = entry.config(self.settings.window_days)
        except (ValidationError, ValueError) as exc:
            self._unreadable = entry.version
            log.error(
                "published scoring config version %d is not valid here (%s); keeping %s",
                entry.version,
                " ".join(str(exc).split()),
                self.because(),
            )
            return
        self.version = entry.version
        self.wanted = config.subscriptions
        self.refused = {}
        log.info(
            "following scoring config version %d (sha256 %s): %d subscription(s)",
            entry.version,
            entry.sha256[:16],
            len(config.subscriptions),
        )


def say_idle(because: str) -> None:
    log.warning("%s has no subscriptions: delivering nothing until one with some", because)


async def deliver_until_stopped(
    running: RunningSubscriptions,
    follower: PublishedSubscriptions | None,
    stopping: asyncio.Event,
) -> None:
    """Deliver, following the published config, until ``stopping`` or a loop's error."""
    tasks = [asyncio.create_task(report_counts(running.loops, COUNT_LINES_EVERY, stopping))]
    if follower is not None:
        tasks.append(asyncio.create_task(follower.run(stopping)))
    ended = asyncio.create_task(stopping.wait())
    failed = asyncio.create_task(running.failure.wait())
    await asyncio.wait([*tasks, ended, failed], return_when=asyncio.FIRST_COMPLETED)
    stopping.set()
    failed.cancel()
    # The follower finishes a reconciliation in hand, so no loop it started is left over.
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await running.stop_all()
    if running.error is not None:
        raise running.error
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
