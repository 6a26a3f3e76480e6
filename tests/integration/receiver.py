"""A real local HTTP receiver for the webhook tests (aiohttp, in a thread of its own)."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.integration.api_support import Served


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    def signed_with(self, secret: bytes) -> bool:
        expected = "sha256=" + hmac.new(secret, self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("X-Tierstream-Signature", ""), expected)


class Receiver:
    """Records every request; ``answer(path, event_id, attempt)`` picks the status."""

    def __init__(
        self, answer: Callable[[str, str, int], int] | None = None, port: int | None = None
    ):
        self.requests: list[Received] = []
        self._attempts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._answer = answer or (lambda path, event_id, attempt: 200)
        app = web.Application()
        app.router.add_post("/{hook}", self._handle)
        self.served = Served(app, port)
        self.url = self.served.url

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        event_id = request.headers.get("X-Tierstream-Event-Id", "")
        with self._lock:
            attempt = self._attempts.get((request.path, event_id), 0) + 1
            self._attempts[(request.path, event_id)] = attempt
        status = self._answer(request.path, event_id, attempt)
        with self._lock:
            self.requests.append(Received(request.path, dict(request.headers), body, status))
        return web.Response(status=status, text="ok" if status < 300 else "no")

    def delivered(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path and 200 <= r.status < 300]

    def close(self) -> None:
        self.served.close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
