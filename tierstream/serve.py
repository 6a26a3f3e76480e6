"""Serving the API: ``tierstream serve`` (standalone), and inside the worker (``attach_api``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry

from scoring.engine import Scorer
from tierstream.api import create_api, start_api
from tierstream.settings import Settings

if TYPE_CHECKING:
    import faust

    from tierstream.stores.redis import RedisStore

log = logging.getLogger("tierstream.serve")

DEFAULT_PORT = 8080
# A reader has a client waiting: two quick retries (about 0.1-0.3 s in all) ride out a
# dropped connection; anything longer is an outage the client should hear about (503)
# rather than wait for the workers' 20-second retry budget.
API_RETRIES = 2
API_SOCKET_TIMEOUT = 2.0


def api_store(settings: Settings) -> RedisStore:
    """A Redis store for reading, with the short retry budget above."""
    from tierstream.stores.redis import RedisStore  # noqa: PLC0415 - Redis only when serving

    return RedisStore(
        settings.redis_url,
        partitions=settings.partitions,
        namespace=settings.redis_namespace,
        socket_timeout=API_SOCKET_TIMEOUT,
        retry=Retry(EqualJitterBackoff(cap=0.25, base=0.05), API_RETRIES),
        history_length=settings.history_length,
    )


def build_serve_app(settings: Settings) -> web.Application:
    """The standalone API application over Redis (the store closes with the app)."""
    store = api_store(settings)
    app = create_api(store, Scorer(settings.scoring_config()), settings)

    async def close_store(app: web.Application) -> None:
        store.close()

    app.on_cleanup.append(close_store)
    return app


def run_serve(settings: Settings) -> None:
    """``tierstream serve``: the API and dashboard, reading Redis, until interrupted."""
    port = settings.api_port or DEFAULT_PORT
    app = build_serve_app(settings)
    print(f"tierstream API and dashboard on http://{settings.api_host}:{port}/", flush=True)
    web.run_app(app, host=settings.api_host, port=port, access_log=None, print=None)


def attach_api(
    faust_app: faust.App, web_app: web.Application, host: str, port: int
) -> Callable[[], Awaitable[None]]:
    """Serve ``web_app`` from a Faust worker: started and stopped with the Faust app.

    A Faust service rather than Faust's own web server: that one owns "/" and its own
    routes, and starts with the web views Faust registers. Returns an ``async stop()``
    (idempotent) for callers that run the app without a Faust worker.
    """
    import mode  # noqa: PLC0415 - Faust's service framework; only the worker has it loaded

    stops: list[Callable[[], Awaitable[None]]] = []

    async def stop() -> None:
        while stops:
            await stops.pop()()

    class ApiService(mode.Service):
        async def on_start(self) -> None:
            stops.append(await start_api(web_app, host, port))

        async def on_stop(self) -> None:
            await stop()

    faust_app.service(ApiService)
    return stop


if __name__ == "__main__":  # python -m tierstream.serve: the same as `tierstream serve`
    run_serve(Settings())
