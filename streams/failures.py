"""What a failed step means: wait it out, redo it from the store, or stop the shard.

The worker's invariant is that a partition's applied offset only ever advances over
messages whose effects are committed. So no error may let a step be skipped: every
exception a step raises gets one of three outcomes, decided here.

* ``TRANSIENT``: the store or the broker is briefly unable to serve (a connection or a
  timeout, a Redis failover's READONLY, LOADING after a restart, BUSY, OOM at maxmemory,
  TRYAGAIN and CLUSTERDOWN during a Cluster reshard or failover, no Cluster node
  answering, a retriable Kafka error). The shard
  pauses, backs off with jitter, re-reads its state from the store and redoes the step.
* ``REDO``: the shard's state moved under us (another worker fenced us, or the stored
  offsets are not the ones the step was built on). Re-read the shard and redo the step if
  Kafka still assigns us the partition; otherwise its new owner re-reads it.
* ``FATAL``: anything else (a bug, a corrupt record). The shard stops, health says why,
  and the process exits non-zero for its supervisor: skipping the step would lose it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TypeVar

from redis.backoff import EqualJitterBackoff

from tierstream.stores.base import FencedError, OffsetsMovedError, StaleBatchError

T = TypeVar("T")

try:  # redis is optional for the embedded store
    from redis import exceptions as redis_errors

    _REDIS_TRANSIENT: tuple[type[BaseException], ...] = (
        redis_errors.ConnectionError,  # includes BusyLoadingError (LOADING)
        redis_errors.TimeoutError,
        redis_errors.ReadOnlyError,  # a replica after a failover, until clients move
        redis_errors.OutOfMemoryError,  # type: ignore[attr-defined]  # OOM (stubs lag redis-py)
        redis_errors.TryAgainError,
        # CLUSTERDOWN, and the Cluster client's "TTL exhausted": it followed ASK, MOVED and
        # TRYAGAIN as often as it may within one call (a slot still migrating).
        redis_errors.ClusterError,
        redis_errors.MasterDownError,
    )
    _REDIS_RESPONSE: type[BaseException] | None = redis_errors.ResponseError
    _REDIS_CLUSTER: type[BaseException] | None = redis_errors.RedisClusterException
except ImportError:  # pragma: no cover
    _REDIS_TRANSIENT = ()
    _REDIS_RESPONSE = None
    _REDIS_CLUSTER = None

# Redis error replies that pass by themselves (a ResponseError carries only the text).
_TRANSIENT_REPLIES = ("OOM", "BUSY", "LOADING", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN")


class Outcome(Enum):
    TRANSIENT = "transient"
    REDO = "redo"
    FATAL = "fatal"


def classify(exc: BaseException) -> Outcome:
    """The outcome of a step that raised ``exc`` (see the module docstring)."""
    if isinstance(exc, FencedError | OffsetsMovedError | StaleBatchError):
        return Outcome.REDO
    if isinstance(exc, _REDIS_TRANSIENT):
        return Outcome.TRANSIENT
    if _REDIS_RESPONSE is not None and isinstance(exc, _REDIS_RESPONSE):
        # redis-py strips the reply's error code into ``status_code`` (OOM, BUSY, ...);
        # a reply it does not know keeps the code as its first word.
        code = getattr(exc, "status_code", None) or str(exc).lstrip().split(" ", 1)[0]
        return Outcome.TRANSIENT if code.upper() in _TRANSIENT_REPLIES else Outcome.FATAL
    if _REDIS_CLUSTER is not None and isinstance(exc, _REDIS_CLUSTER):
        # The Cluster client's own error: "cannot be connected" when no node answers (the
        # whole cluster down or unreachable) passes; anything else (keys of one call in
        # different slots) is a bug.
        return Outcome.TRANSIENT if "cannot be connected" in str(exc) else Outcome.FATAL
    if isinstance(exc, ConnectionError | TimeoutError):  # asyncio's TimeoutError is this one
        return Outcome.TRANSIENT
    cause = exc.__cause__
    if type(exc).__name__ == "ProducerSendError" and cause is not None:
        return classify(cause)  # faust wraps the producer's own (classified) error
    if getattr(exc, "retriable", False):  # aiokafka's and kafka-python's retriable errors
        return Outcome.TRANSIENT
    return Outcome.FATAL


class Backoff:
    """Exponential backoff with jitter, so that many workers cut off together do not all
    come back in the same instant: the n-th wait is drawn between half and all of
    ``min(cap, base * 2**n)``. The formula is redis-py's ``EqualJitterBackoff``, the one
    the Redis store's own retries use (tierstream/stores/redis.py): one policy, whether
    the client retries a command or the worker redoes a step."""

    def __init__(self, base: float = 0.05, cap: float = 5.0) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._delays = EqualJitterBackoff(cap=cap, base=base)

    def next(self) -> float:
        delay = self._delays.compute(self.attempt)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


async def until_done(
    attempt: Callable[[], Awaitable[T]],
    after_failure: Callable[[BaseException, Outcome, Backoff], float],
) -> T:
    """Run ``attempt`` until it returns, the worker's one retry loop (a shard's step and a
    store call off the hot path both use it).

    After each failure, ``after_failure(exc, classify(exc), backoff)`` decides: it returns
    how long to wait before the next attempt, or raises to give up. ``backoff`` lives as
    long as the loop, so consecutive failures wait longer. An attempt that has nothing left
    to do (its shard stopped or handed over) returns instead of raising.
    """
    backoff = Backoff()
    while True:
        try:
            return await attempt()
        except Exception as exc:  # noqa: BLE001 - every error gets an outcome
            delay = after_failure(exc, classify(exc), backoff)
        await asyncio.sleep(delay)
