"""What the jobs run inside a worker's runtime use of it, as a Protocol.

The config follower and the learning coordinator are created by the runtime
(streams/runtime.py) and call back into it; typing them against this view instead of the
runtime class keeps the imports pointing one way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Container
from typing import Protocol, TypeVar

from scoring.engine import Scorer
from scoring.events import Cause
from tierstream.settings import Settings
from tierstream.stores.base import StateStore

T = TypeVar("T")


class RuntimeView(Protocol):
    settings: Settings
    # The blocking store, for calls off the hot path (through ``_admin``).
    admin_store: StateStore
    scorer: Scorer
    counts: Counter[str]

    @property
    def shards(self) -> Container[int]:
        """The shards this process owns now."""
        ...

    async def _admin(self, call: Callable[[], T]) -> T:
        """A blocking store call in a thread, transient errors waited out."""
        ...

    async def _adopt(self, scorer: Scorer) -> list[int]:
        """Score with ``scorer`` from now on; the shards whose logic now uses it."""
        ...

    async def sweep(
        self, marker: str, version: int, swept: dict[int, int], cause: Cause, because: str
    ) -> None:
        """Re-score every owned shard not yet swept with ``version``."""
        ...
