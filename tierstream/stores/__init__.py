"""State stores: one protocol, an in-memory and a Redis implementation, one contract suite."""

from tierstream.stores.base import (
    Batch,
    FencedError,
    Lease,
    StaleBatchError,
    StateStore,
    shard_for,
)
from tierstream.stores.memory import MemoryStore

__all__ = [
    "Batch",
    "FencedError",
    "Lease",
    "MemoryStore",
    "StaleBatchError",
    "StateStore",
    "shard_for",
]
