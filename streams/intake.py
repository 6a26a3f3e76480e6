"""Input batches straight from Faust's consumer to the worker, without per-event objects.

Faust delivers every message through its conductor, a channel queue and the agent's
stream: a task per message (``wait_first``), an ``Event``, queue hand-offs and per-event
stream bookkeeping. The worker needs none of it: it commits its own positions (Redis owns
them; Faust's acks are off for the inputs) and handles a partition's messages as one
atomic step. So the worker takes over the loop that Faust's fetcher runs
(``Consumer._drain_messages``): each ``getmany`` of the same consumer, under the same
flow control (rebalances pause it), becomes one batch per partition, handed to the
runtime and awaited before the next fetch, which is the backpressure. Messages of any
other topic (Faust's own) still go through Faust's normal path.

This reaches into a private method of faust-streaming's consumer; ``install`` checks it
is there and leaves Faust's own path (the agent's stream) in place if it is not, so the
worker stays correct, only slower, on a Faust that changed it.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from streams.deadletters import RawMessage

log = logging.getLogger("tierstream.intake")

Handler = Callable[[dict[int, list[RawMessage]]], Awaitable[None]]


def install(consumer: Any, topics: Collection[str], handle: Handler) -> bool:
    """Route the input ``topics`` of Faust's ``consumer`` to ``handle`` in batches.

    True if installed; False leaves Faust's own delivery (through the agent) in place.
    """
    if not all(hasattr(consumer, name) for name in ("_drain_messages", "getmany", "callback")):
        log.warning("this faust-streaming has no batch fetch hook; using its per-event stream")
        return False
    inputs = frozenset(topics)

    async def drain_messages(self: Any, fetcher: Any) -> None:
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        callback = self.callback  # Faust's path, for any topic that is not an input
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                batch: dict[int, list[RawMessage]] = defaultdict(list)
                async for tp, message in self.getmany(timeout=1.0):
                    if tp.topic in inputs:
                        batch[tp.partition].append(
                            RawMessage(
                                tp.topic,
                                tp.partition,
                                message.offset,
                                message.key,
                                message.value,
                                message.timestamp,
                            )
                        )
                    else:
                        await callback(message)
                if batch:
                    await handle(batch)
                else:
                    await asyncio.sleep(0)  # an empty poll must not starve the loop
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise

    consumer._drain_messages = types.MethodType(drain_messages, consumer)
    return True
