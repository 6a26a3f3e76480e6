"""Workers follow the scoring config published by ``tierstream config apply``.

Every ``config_check_seconds`` a worker reads the version in force from the store. A newer
version is adopted at once by every shard it owns (the next step scores with it), and then
every customer of those shards is re-scored through the normal atomic commit, cause
``config_update``: a customer whose scores did not move still gets the tier and segment the
new rules give, and a change event when that differs. The sweep reuses the worker's
per-shard marker (``config_swept:<shard>``), so a sweep cut short by ``kill -9`` or a
rebalance is finished by the shard's next owner.

A published config this release cannot read (a newer release's sections, say) is not
adopted: the worker keeps the version it has and says so once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError

from scoring.engine import Scorer
from tierstream.config_versions import PublishedConfig
from tierstream.published import CONFIG_META, Watched

if TYPE_CHECKING:
    from streams.runtime_view import RuntimeView
    from tierstream.settings import Settings

log = logging.getLogger("tierstream.worker")

SWEPT_MARKER = "config_swept"


def successor(
    scorer: Scorer, entry: PublishedConfig, window_days: int | Literal["lifetime"] | None
) -> Scorer:
    """The scorer for a newly published config; keeps what the config does not decide."""
    config = entry.config(window_days)
    # Quintile cut points published for the population stay in force while the method
    # does; the owner of shard 0 recomputes them on its schedule (or at once, if new).
    keep = scorer.config.scores.method == config.scores.method == "quintiles"
    return Scorer(config, scorer.thresholds if keep else None, scorer.behaviour)


class ConfigFollower:
    def __init__(self, runtime: RuntimeView, version: int) -> None:
        self.runtime = runtime
        self.version = version  # the published version in force here (0: the local file)
        self.published = Watched(
            runtime.admin_store,
            CONFIG_META,
            PublishedConfig.from_bytes,
            runtime.settings.config_check_seconds,
        )
        self._unreadable = 0  # the version last refused, said once
        self._swept: dict[int, int] = {}

    async def follow_config(self) -> None:
        runtime = self.runtime
        watched = self.published
        if not watched.claim():
            return
        entry = watched.take(await runtime._admin(watched.read_raw))
        if entry is None:
            return
        if entry.version > self.version and entry.version != self._unreadable:
            try:
                scorer = successor(runtime.scorer, entry, runtime.settings.window_days)
            except (ValidationError, ValueError) as exc:
                self._unreadable = entry.version
                log.error(
                    "published scoring config version %d is not valid for this worker (%s); "
                    "keeping version %d",
                    entry.version,
                    " ".join(str(exc).split()),
                    self.version,
                )
                return
            await runtime._adopt(scorer)
            self.version = entry.version
            runtime.counts["config_updates"] += 1
            log.info(
                "adopted scoring config version %d (sha256 %s)", entry.version, entry.sha256[:16]
            )
        if self.version == 0:
            return
        because = f"scoring config version {self.version} applied"
        await runtime.sweep(SWEPT_MARKER, self.version, self._swept, "config_update", because)


def adopt_published(
    raw: bytes | None, scorer: Scorer, version: int, settings: Settings
) -> tuple[Scorer, int] | None:
    """For readers (the API): the scorer of a newer published version, or None."""
    if raw is None:
        return None
    try:
        entry = PublishedConfig.from_bytes(raw)
    except (ValueError, KeyError) as exc:
        not_valid_here(exc)
        return None
    return adopt_newer(entry, scorer, version, settings)


def adopt_newer(
    entry: PublishedConfig | None, scorer: Scorer, version: int, settings: Settings
) -> tuple[Scorer, int] | None:
    """The scorer of ``entry`` if it is newer than ``version`` and valid here, else None."""
    if entry is None or entry.version <= version:
        return None
    try:
        return successor(scorer, entry, settings.window_days), entry.version
    except (ValidationError, ValueError, KeyError) as exc:
        not_valid_here(exc)
        return None


def not_valid_here(exc: Exception) -> None:
    log.warning("the published scoring config is not valid here (%s)", exc)
