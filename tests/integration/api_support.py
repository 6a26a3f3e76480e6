"""Helpers for the API and dashboard tests: CDNOW states in a store, a served API."""

from __future__ import annotations

import asyncio
import functools
import http.client
import json
import socket
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

from scoring.engine import Change, Scorer
from scoring.state import CustomerState
from tests.cdnow import cdnow_history
from tierstream.api import start_api
from tierstream.replay import ReplayStats, replay
from tierstream.settings import load_scoring_config
from tierstream.stores import Batch, StateStore, record_changes, record_memberships, shard_for

AS_OF = datetime(1998, 7, 1, tzinfo=UTC)
BATCH = 500


@dataclass(frozen=True)
class Replayed:
    states: dict[str, CustomerState]
    changes: list[Change]
    scorer: Scorer


@functools.cache
def cdnow() -> Replayed:
    """Every CDNOW customer's state and change as of 1998-07-01 (computed once per run)."""
    events = list(cdnow_history())
    changes: list[Change] = []
    result = replay(
        events,
        Scorer(load_scoring_config(None)),
        as_of=AS_OF,
        emit=changes.append,
        stats=ReplayStats(),
    )
    return Replayed(result.states, changes, result.scorer)


def commit_states(
    store: StateStore,
    states: Iterable[CustomerState],
    changes: Iterable[Change] = (),
    counts: dict[str, int] | None = None,
) -> None:
    """Commit states (and their changes, as history and tallies) into their home shards."""
    by_shard: dict[int, list[CustomerState]] = defaultdict(list)
    for state in states:
        by_shard[shard_for(state.customer_id, store.partitions)].append(state)
    changes_of: dict[str, list[Change]] = defaultdict(list)
    for change in changes:
        changes_of[change.customer_id].append(change)
    for shard, group in by_shard.items():
        lease = store.acquire(shard)
        for start in range(0, len(group), BATCH):
            chunk = group[start : start + BATCH]
            batch = Batch(states=[state.copy() for state in chunk])
            step = [c for state in chunk for c in changes_of.get(state.customer_id, ())]
            record_changes(batch, step, counts if start == 0 and shard == min(by_shard) else None)
            record_memberships(batch, {})  # fresh states, as the worker's first commit
            store.commit(lease, batch)


def free_port() -> int:
    """A loopback port nothing listens on (bound and released: good enough for a test)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Served:
    """An aiohttp app served on 127.0.0.1 from a background thread's own event loop."""

    def __init__(self, app: web.Application, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._stop: Callable[[], Awaitable[None]] = self.run(start_api(app, "127.0.0.1", self.port))

    def run(self, coro: Awaitable[Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        self.run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    """A keep-alive HTTP client (what a support system calling the API would use)."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.token = token

    def get(self, path: str, token: str | None = None) -> tuple[int, Any, dict[str, str]]:
        headers = {}
        if token or self.token:
            headers["Authorization"] = f"Bearer {token or self.token}"
        self.connection.request("GET", path, headers=headers)
        response = self.connection.getresponse()
        raw = response.read()
        kind = response.getheader("Content-Type", "")
        body: Any = json.loads(raw) if kind.startswith("application/json") else raw.decode()
        return response.status, body, dict(response.getheaders())

    def customer(self, customer_id: str) -> tuple[int, Any]:
        status, body, _ = self.get("/customers/" + quote(customer_id, safe=""))
        return status, body

    def close(self) -> None:
        self.connection.close()
