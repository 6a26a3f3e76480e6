"""The one Redis store factory of every process and command."""

from __future__ import annotations

from tierstream.settings import Settings
from tierstream.stores.from_settings import API_SOCKET_TIMEOUT, redis_store


def socket_timeout(store: object) -> object:
    client = store._client  # type: ignore[attr-defined]  # redis-py client, no I/O yet
    return client.connection_pool.connection_kwargs["socket_timeout"]


def test_one_factory_gives_writers_and_readers_their_budgets_and_any_namespace() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", partitions=3, redis_namespace="ns")
    writer = redis_store(settings)
    reader = redis_store(settings, reader=True)
    accounts = redis_store(settings, namespace="ns.accounts")
    try:
        assert (writer.namespace, writer.partitions) == ("ns", 3)
        assert reader.namespace == "ns"
        assert accounts.namespace == "ns.accounts"
        assert socket_timeout(reader) == API_SOCKET_TIMEOUT
        assert socket_timeout(writer) != API_SOCKET_TIMEOUT
    finally:
        for store in (writer, reader, accounts):
            store.close()
