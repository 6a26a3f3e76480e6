"""The scoring config in force, versioned in the store (``tierstream config apply``).

    <ns>:meta:config               the version in force: {"version", "sha256", "text", ...}
    <ns>:meta:config:v<N>          every version ever applied (roll back with --version N)
    <ns>:meta:config_swept:<shard> the last version shard <shard> was fully re-scored with

The text is kept verbatim (comments included), so ``config show`` prints what was applied
and every reader (worker, API, CLI) parses the same bytes. Versions only grow: a roll back
is a new version with an older text, so a worker never has to go backwards.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from scoring.config import ScoringConfig, load_config_text
from tierstream.published import CONFIG_META as CONFIG_META
from tierstream.published import Watched


def version_meta(version: int) -> str:
    return f"config:v{version}"


def swept_meta(shard: int) -> str:
    return f"config_swept:{shard}"


class MetaStore(Protocol):
    def get_meta(self, name: str) -> bytes | None: ...
    def set_meta(self, name: str, value: bytes) -> None: ...


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PublishedConfig:
    version: int
    sha256: str
    text: str
    applied_at: str
    source: str  # the file it was applied from, for the operator's eyes only

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> PublishedConfig:
        data = json.loads(raw)
        return cls(
            int(data["version"]),
            str(data["sha256"]),
            str(data["text"]),
            str(data.get("applied_at", "")),
            str(data.get("source", "")),
        )

    def config(self, window_days: int | Literal["lifetime"] | None = None) -> ScoringConfig:
        """The parsed config (``window_days``: the TIERSTREAM_WINDOW_DAYS override)."""
        return with_window(load_config_text(self.text), window_days)


def with_window(
    config: ScoringConfig, window_days: int | Literal["lifetime"] | None
) -> ScoringConfig:
    if window_days is None:
        return config
    days = None if window_days == "lifetime" else window_days
    return config.model_copy(update={"window_days": days})


def published(store: MetaStore) -> PublishedConfig | None:
    return Watched(store, CONFIG_META, PublishedConfig.from_bytes).read()


def published_version(store: MetaStore, version: int) -> PublishedConfig | None:
    raw = store.get_meta(version_meta(version))
    return PublishedConfig.from_bytes(raw) if raw else None


class NoChangeError(ValueError):
    """The text applied is the version already in force."""


class ConcurrentApplyError(RuntimeError):
    """Another apply took the same version number first."""


def publish(store: MetaStore, text: str, source: str) -> PublishedConfig:
    """Publish ``text`` (already validated) as the next version; workers adopt it."""
    current = published(store)
    digest = text_hash(text)
    if current is not None and current.sha256 == digest:
        raise NoChangeError(f"this config is already version {current.version}, in force")
    version = (current.version if current is not None else 0) + 1
    entry = PublishedConfig(
        version, digest, text, datetime.now(UTC).isoformat(timespec="seconds"), source
    )
    payload = entry.to_bytes()
    # The version number is claimed first (SET NX): of two applies racing, one wins it.
    claim = getattr(store, "set_meta_if_absent", None)
    if claim is not None:
        claim(version_meta(version), payload)
        if store.get_meta(version_meta(version)) != payload:
            raise ConcurrentApplyError(
                f"another apply published version {version} at the same time; "
                "check `tierstream config show` and apply again"
            )
    else:
        store.set_meta(version_meta(version), payload)
    store.set_meta(CONFIG_META, payload)
    return entry
