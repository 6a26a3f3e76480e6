"""Erasure requests (GDPR/CCPA): the contract, the salted hash, and what a shard step does.

A request ``{"event_id", "customer_id", "requested_at"[, "suppress"]}`` travels on the
erasures topic, keyed by the customer id like the customer's events, on the same number
of partitions: it lands in the customer's shard and is applied by that shard's one
writer, in order with the customer's events, inside the same atomic commit as the
offsets that pass it (so a crash can neither lose it nor apply it twice).

Applying it removes everything held about the customer (state with its remembered event
ids, recent history, schedule entry, audience memberships, and whatever
``ERASURE_HOOKS`` contribute: accounts, traits) and emits one tier change with cause
``erasure`` and ``new_tier`` null. What stays is keyed by a salted hash of the id, never the id:

* the shard's ``erased`` hash: digest -> ``<last change version>`` (``:s`` appended when
  later events are to be suppressed). A fresh state for the id continues the version
  numbering, so its changes never reuse an erased change's event id;
* the shard's ``audit`` list: one JSON record per applied request.

The salt is random, made once per namespace and kept in the store's metadata
(``erasure_salt``): the digest of an id can be checked by whoever holds the store, but
the id cannot be read back from it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from scoring.events import EARLIEST_EVENT, LATEST_EVENT, Identifier
from scoring.state import CustomerState

SALT_META = "erasure_salt"
# Dead-letter kind of an event for a customer erased with suppression.
ERASED_KIND = "erased"
# Suffix of an ``erased`` marker whose later events are dead-lettered.
SUPPRESSED = ":s"


class ErasureRequest(BaseModel):
    """One request to erase one customer (the erasures topic's value)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: Identifier
    customer_id: Identifier
    # Bounded like event times: it becomes the erasure change's occurred_at.
    requested_at: Annotated[AwareDatetime, Field(ge=EARLIEST_EVENT, lt=LATEST_EVENT)]
    # Dead-letter (kind "erased") every later event for this id instead of starting afresh.
    suppress: bool = False


class SaltSource(Protocol):
    def get_meta(self, name: str) -> bytes | None: ...
    def set_meta(self, name: str, value: bytes) -> None: ...


def erasure_salt(store: SaltSource) -> bytes:
    """The namespace's salt, made on first use. Two makers racing both re-read the winner."""
    current = store.get_meta(SALT_META)
    if current:
        return current
    setter = getattr(store, "set_meta_if_absent", None)
    fresh = secrets.token_hex(32).encode()
    if setter is not None:
        setter(SALT_META, fresh)
    else:
        store.set_meta(SALT_META, fresh)
    return store.get_meta(SALT_META) or fresh


def customer_digest(salt: bytes, customer_id: str) -> str:
    """HMAC-SHA256 of the id under the namespace salt, 128 bits in hex."""
    return hmac.new(salt, customer_id.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def parse_marker(marker: str | bytes | None) -> tuple[int, bool] | None:
    """(last version, suppressed) of an ``erased`` marker; None: never erased."""
    if marker is None:
        return None
    text = marker.decode() if isinstance(marker, bytes) else marker
    suppressed = text.endswith(SUPPRESSED)
    return int(text.removesuffix(SUPPRESSED)), suppressed


def make_marker(version: int, suppressed: bool) -> str:
    return f"{version}{SUPPRESSED if suppressed else ''}"


@dataclass(slots=True)
class Erasure:
    """What one applied request writes (``Batch.erasures``): all of it id-free but
    ``customer_id``, which only names the keys to delete."""

    customer_id: str
    digest: str
    marker: str
    audit: bytes
    # Further keys to delete (ERASURE_HOOKS), in the shard's hash slot.
    extra_keys: list[bytes] = field(default_factory=list)


def audit_record(
    request: ErasureRequest, digest: str, salt: bytes, version: int, had_state: bool
) -> bytes:
    """The audit entry: the request id (hashed too if it holds the customer id)."""
    request_id = request.event_id
    if request.customer_id in request_id:
        request_id = "sha:" + customer_digest(salt, request_id)
    record = {
        "request_id": request_id,
        "customer_hash": digest,
        "requested_at": request.requested_at.isoformat(),
        "suppress": request.suppress,
        "had_state": had_state,
        "version": version,
    }
    return json.dumps(record, separators=(",", ":")).encode()


# Hooks for data kept outside the customer's state (accounts, audiences, traits): each is
# called with the customer's state as it was before the erasure (None: none held) and the
# Erasure being built, and may add keys of the same shard to delete in the same commit
# (``Erasure.extra_keys``), or subtract the customer's contribution from an account. None
# exist yet. Audience memberships need no hook: they live in shared sets, not in keys of
# their own, and the step's membership moves (``Batch.memberships``) take an erased
# customer out of every set in the erasing commit.
ErasureHook = Callable[[CustomerState | None, Erasure], None]
ERASURE_HOOKS: list[ErasureHook] = []
