"""The worker's one retry loop (streams.failures.until_done): a shard's steps and the store
calls off the hot path both wait failures out through it."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ReadOnlyError

from streams.failures import Backoff, Outcome, until_done
from tierstream.stores.base import FencedError, Lease


def test_failures_are_waited_out_with_a_growing_backoff_until_the_attempt_returns() -> None:
    errors: list[BaseException] = [
        ReadOnlyError("READONLY"),
        FencedError(Lease(shard=0, epoch=1), 2),
        ConnectionResetError(),
    ]
    seen: list[tuple[str, Outcome, int]] = []

    async def attempt() -> str:
        if errors:
            raise errors.pop(0)
        return "done"

    def after_failure(exc: BaseException, outcome: Outcome, backoff: Backoff) -> float:
        seen.append((type(exc).__name__, outcome, backoff.attempt))
        backoff.next()
        return 0.0

    assert asyncio.run(until_done(attempt, after_failure)) == "done"
    # One backoff for the whole loop: the third failure finds two waits already taken.
    assert seen == [
        ("ReadOnlyError", Outcome.TRANSIENT, 0),
        ("FencedError", Outcome.REDO, 1),
        ("ConnectionResetError", Outcome.TRANSIENT, 2),
    ]


def test_giving_up_raises_the_failure_and_an_attempt_with_nothing_to_do_returns() -> None:
    async def broken() -> None:
        raise KeyError("corrupt record")

    def give_up(exc: BaseException, outcome: Outcome, backoff: Backoff) -> float:
        assert outcome is Outcome.FATAL
        raise exc

    with pytest.raises(KeyError, match="corrupt record"):
        asyncio.run(until_done(broken, give_up))

    stopped = False
    calls = 0

    async def step() -> int | None:
        nonlocal calls
        calls += 1
        if stopped:
            return None  # the shard stopped after the first failure: nothing left to do
        raise KeyError("corrupt record")

    def stop(exc: BaseException, outcome: Outcome, backoff: Backoff) -> float:
        nonlocal stopped
        stopped = True
        return 0.0

    assert asyncio.run(until_done(step, stop)) is None
    assert calls == 2
