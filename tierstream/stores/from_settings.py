"""The one factory of the Redis store from ``Settings``, for every process and command,
and the accounts' store beside the customers'."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tierstream.settings import Settings
    from tierstream.stores.redis import RedisStore

# A reader has a client waiting: two quick retries (about 0.1-0.3 s in all) ride out a
# dropped connection; anything longer is an outage the client should hear about (503)
# rather than wait for the workers' 20-second retry budget.
API_RETRIES = 2
API_SOCKET_TIMEOUT = 2.0
ACCOUNTS_NAMESPACE_SUFFIX = ".accounts"


def redis_store(
    settings: Settings, *, namespace: str | None = None, reader: bool = False
) -> RedisStore:
    """The Redis store of ``settings`` (``namespace``: another one on the same Redis, e.g.
    the accounts'). ``reader``: the short timeout and retry budget above, for the API and
    the commands that only read; otherwise the store's own, for workers and writers."""
    from tierstream.stores.redis import RedisStore  # noqa: PLC0415 - redis-py only when used

    options: dict[str, Any] = {}
    if reader:
        from redis.backoff import EqualJitterBackoff  # noqa: PLC0415
        from redis.retry import Retry  # noqa: PLC0415

        options = {
            "socket_timeout": API_SOCKET_TIMEOUT,
            "retry": Retry(EqualJitterBackoff(cap=0.25, base=0.05), API_RETRIES),
        }
    return RedisStore(
        settings.redis_url,
        partitions=settings.partitions,
        namespace=settings.redis_namespace if namespace is None else namespace,
        history_length=settings.history_length,
        **options,
    )


def accounts_namespace(settings: Settings) -> str:
    """The Redis namespace of the account states (next to the customers', never inside)."""
    return settings.redis_namespace + ACCOUNTS_NAMESPACE_SUFFIX


def account_store(settings: Settings) -> RedisStore:
    """The store of the account step's states (streams/accounts.py): the customers' Redis,
    the accounts' namespace, a shard per partition of the contributions topic."""
    return redis_store(settings, namespace=accounts_namespace(settings))
