"""State stores: one protocol, an in-memory and a Redis implementation, one contract suite."""

from tierstream.stores.base import Batch, FencedError, Lease, StateStore, shard_for
from tierstream.stores.memory import MemoryStore

__all__ = ["Batch", "FencedError", "Lease", "MemoryStore", "StateStore", "shard_for"]
