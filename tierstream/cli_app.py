"""The ``tierstream`` command's Typer app: an unreachable Redis is one line, not a traceback.

Most commands that read the store (``customer``, ``export``, ``report``, ``review``,
``clv fit``, ``behaviours --show``) let redis-py's connection error rise; caught once
here, where the installed script calls the app, it becomes one line and exit 2, like every
other problem with what a command was given.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class TierstreamApp(typer.Typer):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            # redis-py names the host and port, never the URL's password.
            print(f"error: cannot reach Redis (TIERSTREAM_REDIS_URL): {exc}", file=sys.stderr)
            sys.exit(2)
