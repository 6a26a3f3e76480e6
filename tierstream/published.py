"""Versions published in the store's metadata, and one way to watch them.

Four documents are published, versioned, under ``<ns>:meta:<key>`` and read by every
worker, the API and the CLI:

    thresholds         the quintile score cut points (the owner of shard 0 publishes them)
    segments_snapshot  the behaviour model (``tierstream behaviours`` or the learner)
    config             the scoring config in force (``tierstream config apply``)
    clv_snapshot       the lifetime value model (``tierstream clv fit``)

``Watched`` is the one reader of such a key: it reads the bytes, parses them only when they
changed since the last read (the parse is the caller's: each reader reports a bad document
its own way), and says when a re-read is due (at most every ``every`` seconds). What to do
with a newer version (adopt it, sweep the shards, explain with it) stays with the reader.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from scoring.scores import Thresholds

if TYPE_CHECKING:
    from models.snapshot import BehaviourSnapshot

T = TypeVar("T")

THRESHOLDS_META = "thresholds"
CONFIG_META = "config"
SNAPSHOT_META = "segments_snapshot"
CLV_META = "clv_snapshot"

__all__ = [
    "CLV_META",
    "CONFIG_META",
    "SNAPSHOT_META",
    "THRESHOLDS_META",
    "Watched",
    "behaviour_snapshot",
    "thresholds",
]


def thresholds(raw: bytes) -> Thresholds:
    """The published quintile cut points."""
    return Thresholds.from_dict(json.loads(raw))


def behaviour_snapshot(raw: bytes) -> BehaviourSnapshot:
    """The published behaviour model."""
    from models.snapshot import BehaviourSnapshot  # noqa: PLC0415 - numpy; only when used

    return BehaviourSnapshot.from_bytes(raw)


class MetaReader(Protocol):
    def get_meta(self, name: str) -> bytes | None: ...


# Runs a blocking store call off the event loop: the worker's retrying ``_admin``, the
# API's bounded ``call``.
Runner = Callable[[Callable[[], "bytes | None"]], Awaitable["bytes | None"]]


class Watched(Generic[T]):
    """One published document of the store: read, parsed once per distinct bytes, cached.

    ``parse`` turns the stored bytes into the value (it may raise, or log and return None);
    nothing published, or an empty value, is None without a parse.
    """

    def __init__(
        self, store: MetaReader, key: str, parse: Callable[[bytes], T], every: float = 0.0
    ) -> None:
        self.store = store
        self.key = key
        self.parse = parse
        self.every = every
        self.checked: float | None = None  # monotonic time of the last read (or claim)
        self._raw: bytes | None = None
        self.value: T | None = None

    def due(self) -> bool:
        """True when the last read is at least ``every`` seconds old (or there was none)."""
        checked = self.checked
        return checked is None or time.monotonic() - checked >= self.every

    def claim(self) -> bool:
        """For a periodic reader: True if a read is due, and the next one ``every`` seconds
        from now whatever this read gives (a failed read waits its turn too)."""
        if not self.due():
            return False
        self.checked = time.monotonic()
        return True

    def read_raw(self) -> bytes | None:
        """The stored bytes (blocking)."""
        return self.store.get_meta(self.key)

    def take(self, raw: bytes | None) -> T | None:
        """The value of ``raw``: parsed unless these bytes were parsed last time. A parse
        that raises leaves the cache as it was."""
        if raw == self._raw and raw is not None:
            return self.value
        value = self.parse(raw) if raw else None
        self._raw, self.value = raw, value
        return value

    def read(self) -> T | None:
        """Read and parse now (blocking): the CLI's one-off reads."""
        return self.take(self.read_raw())

    async def refresh(self, run: Runner) -> T | None:
        """The value, re-read through ``run`` when due. A read that fails is tried again at
        the next call; one that returns counts as the check even if its parse raises."""
        if not self.due():
            return self.value
        raw = await run(self.read_raw)
        self.checked = time.monotonic()
        return self.take(raw)
