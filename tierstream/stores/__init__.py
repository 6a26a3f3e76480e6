"""State stores: one protocol, an in-memory and a Redis implementation, one contract suite."""

from tierstream.stores.base import (
    DEFAULT_HISTORY_LENGTH,
    Batch,
    FencedError,
    Lease,
    OffsetsMovedError,
    StaleBatchError,
    StateStore,
    shard_for,
)
from tierstream.stores.commit_recipe import (
    build_batch,
    decode_history,
    history_entry,
    record_changes,
    record_memberships,
)
from tierstream.stores.memory import MemoryStore

__all__ = [
    "DEFAULT_HISTORY_LENGTH",
    "Batch",
    "FencedError",
    "Lease",
    "OffsetsMovedError",
    "MemoryStore",
    "StaleBatchError",
    "StateStore",
    "build_batch",
    "decode_history",
    "history_entry",
    "record_changes",
    "record_memberships",
    "shard_for",
]
