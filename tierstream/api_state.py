"""What every route of the API shares: its state (the store, the scorer in force, the
published versions it follows, the counted sizes) and the key it is kept under in the app.

The store is blocking (redis-py), so every store call runs in a worker thread through
``ApiState.call``, bounded by ``STORE_TIMEOUT``: a Redis outage is a prompt 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry

from scoring.engine import Scorer
from scoring.scores import Thresholds
from streams.kafka_probe import KafkaProbe
from streams.metrics import PipelineGauges
from tierstream.audiences import Sizes, counted_sizes
from tierstream.config_versions import PublishedConfig
from tierstream.published import CONFIG_META, SNAPSHOT_META, THRESHOLDS_META, Watched, thresholds
from tierstream.settings import Settings
from tierstream.stores.base import StateStore

if TYPE_CHECKING:
    from models.snapshot import BehaviourSnapshot
    from streams.metrics import Metrics

log = logging.getLogger("tierstream.api")
T = TypeVar("T")

# A lookup is two Redis round trips (state, history): milliseconds. Three seconds means
# Redis is down or failing over; answer 503 then rather than hold the client (the store's
# own retries may go on in the background thread; their result is dropped).
STORE_TIMEOUT = 3.0
# The published behaviour model changes rarely (one publish per learning run); re-reading it
# every few seconds keeps lookups at two round trips.
MODEL_TTL = 5.0
# The first count of sizes is awaited this long (CDNOW's 23,570 customers take 0.5 s); a
# larger population keeps counting in the background and the caller gets a 503 to retry.
FIRST_COUNT_WAIT = 10.0


class StoreUnavailableError(RuntimeError):
    """The state store did not answer in time (or raised): the API answers 503."""


# ----------------------------------------------------------------- app state


class SizesCache:
    """Customers per tier and segment, from one scan of every state, reused ``ttl`` seconds.

    A scan is O(customers): 0.4-0.5 s for the 23,570 CDNOW customers (~20 µs each, mostly
    JSON decoding), minutes for ten million. So a stale answer is served while one
    background scan refreshes it: requests never wait for a scan except the very first,
    and at most one scan runs at a time. Large deployments raise ``sizes_ttl``.
    """

    def __init__(self, store: StateStore, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self.latest: Sizes | None = None
        self._running: asyncio.Task[Sizes] | None = None

    async def get(self) -> Sizes:
        latest = self.latest
        if latest is not None and time.monotonic() - latest.monotonic < self.ttl:
            return latest
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._refresh())
            # A background refresh nobody awaits may fail (logged in _refresh); mark its
            # exception as seen so asyncio does not report it again when the task is freed.
            self._running.add_done_callback(lambda task: task.cancelled() or task.exception())
        if latest is not None:
            return latest  # stale while the refresh runs
        try:
            return await asyncio.wait_for(asyncio.shield(self._running), FIRST_COUNT_WAIT)
        except TimeoutError:
            raise StoreUnavailableError(
                "tier and segment sizes are still being counted; ask again shortly"
            ) from None

    async def _refresh(self) -> Sizes:
        try:
            sizes = await asyncio.to_thread(self._scan)
        except Exception as exc:
            log.warning("counting tier and segment sizes failed: %r", exc)
            raise
        self.latest = sizes
        return sizes

    def _scan(self) -> Sizes:
        counted = counted_sizes(self.store)  # None: a store whose sizes are not kept
        if counted is not None:
            return counted
        started = time.monotonic()
        tiers: Counter[str | None] = Counter()
        segments: Counter[str | None] = Counter()
        customers = 0
        for state in self.store.scan():
            tiers[state.tier] += 1
            segments[state.segment] += 1
            customers += 1
        finished = time.monotonic()
        return Sizes(tiers, segments, customers, datetime.now(UTC), finished, finished - started)


@dataclass
class ApiState:
    store: StateStore
    scorer: Scorer
    settings: Settings
    metrics: Metrics | None
    kafka: KafkaProbe | None
    registry: CollectorRegistry
    gauges: PipelineGauges
    sizes: SizesCache
    token: bytes | None
    config_version: int = 0  # the published scoring config version served (0: local file)
    # The published versions, each re-read at most every MODEL_TTL seconds.
    published_thresholds: Watched[Thresholds] = field(init=False)
    published_config: Watched[PublishedConfig] = field(init=False)
    published_model: Watched[BehaviourSnapshot | None] = field(init=False)

    def __post_init__(self) -> None:
        store = self.store
        self.published_thresholds = Watched(store, THRESHOLDS_META, thresholds, MODEL_TTL)
        self.published_config = Watched(store, CONFIG_META, PublishedConfig.from_bytes, MODEL_TTL)
        self.published_model = Watched(store, SNAPSHOT_META, _snapshot_or_none, MODEL_TTL)

    async def call(self, fn: Callable[[], T], timeout: float = STORE_TIMEOUT) -> T:
        """Run a blocking store call in a thread, bounded by ``timeout``."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn), timeout)
        except TimeoutError:
            raise StoreUnavailableError(
                f"no answer from the state store within {timeout:g}s"
            ) from None
        except Exception as exc:  # any store failure is a 503 with its reason
            raise StoreUnavailableError(f"{type(exc).__name__}: {exc}") from exc

    async def current_scorer(self) -> Scorer:
        """The scorer with the cut points the workers use now.

        Under quintile scoring the workers publish recomputed cut points in the store; the
        API adopts a newer version (checked at most every MODEL_TTL seconds), or it would
        explain customers with cut points the workers no longer apply. A newer published
        scoring config (tierstream config apply) is adopted the same way.
        """
        await self._follow_config()
        if self.scorer.config.scores.method != "quintiles":
            return self.scorer
        published = await self.published_thresholds.refresh(self.call)
        if published is not None and published.version > self.scorer.thresholds.version:
            self.scorer = self.scorer.with_thresholds(published)
        return self.scorer

    async def _follow_config(self) -> None:
        from streams.config_follower import adopt_newer, not_valid_here  # noqa: PLC0415

        try:
            entry = await self.published_config.refresh(self.call)
        except (ValueError, KeyError) as exc:  # tried again at the next check
            not_valid_here(exc)
            return
        adopted = adopt_newer(entry, self.scorer, self.config_version, self.settings)
        if adopted is not None:
            self.scorer, self.config_version = adopted

    async def snapshot(self) -> BehaviourSnapshot | None:
        """The published behaviour model, re-read at most every MODEL_TTL seconds."""
        return await self.published_model.refresh(self.call)


def _snapshot_or_none(raw: bytes) -> BehaviourSnapshot | None:
    from models.snapshot import BehaviourSnapshot  # noqa: PLC0415 - numpy; only when used

    try:
        return BehaviourSnapshot.from_bytes(raw)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("the published behaviour snapshot does not parse: %r", exc)
        return None


STATE_KEY = web.AppKey("state", ApiState)
