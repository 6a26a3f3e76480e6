"""``tierstream serve``: the API and dashboard over Redis (assembled by tierstream/bootstrap.py)."""

from __future__ import annotations

from aiohttp import web

from tierstream.bootstrap import attach_api, serve_app
from tierstream.settings import Settings

DEFAULT_PORT = 8080

__all__ = ["DEFAULT_PORT", "attach_api", "run_serve"]


def run_serve(settings: Settings) -> None:
    """``tierstream serve``: the API and dashboard, reading Redis, until interrupted."""
    port = settings.api_port or DEFAULT_PORT
    app = serve_app(settings)
    print(f"tierstream API and dashboard on http://{settings.api_host}:{port}/", flush=True)
    web.run_app(app, host=settings.api_host, port=port, access_log=None, print=None)


if __name__ == "__main__":  # python -m tierstream.serve: the same as `tierstream serve`
    run_serve(Settings())
