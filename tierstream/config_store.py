"""``tierstream config show`` and ``config apply``, and the config in force for commands.

A published version (tierstream/config_versions.py) is the config every worker, the API
and the CLI score with; the local file (TIERSTREAM_CONFIG, else the packaged default) is
used only while nothing has been published.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from redis.exceptions import RedisError

from scoring.config import ScoringConfig, load_config_text
from tierstream.cli_config_problems import report_problems
from tierstream.cli_input import fail, load_settings, say, settings_config
from tierstream.config_versions import (
    ConcurrentApplyError,
    NoChangeError,
    PublishedConfig,
    publish,
    published,
    published_version,
    text_hash,
)
from tierstream.settings import DEFAULT_CONFIG, Settings

if TYPE_CHECKING:
    from tierstream.stores.redis import RedisStore


def meta_store(settings: Settings) -> RedisStore:
    """The store, with the API's short timeouts: an unreachable Redis is one line, soon."""
    from tierstream.stores.from_settings import redis_store  # noqa: PLC0415 - Redis when needed

    return redis_store(settings, reader=True)


def local_label(settings: Settings) -> str:
    return str(settings.config) if settings.config else "the packaged default config"


def read_published(store: RedisStore) -> PublishedConfig | None:
    """The version in force, or one line and exit 2 when Redis cannot say."""
    try:
        return published(store)
    except (RedisError, OSError) as exc:
        fail(f"cannot read the published config from Redis: {exc}")
    except (ValueError, KeyError, TypeError) as exc:
        fail(f"the published config in Redis does not parse: {exc}")


def earlier_version(store: RedisStore, version: int) -> PublishedConfig:
    try:
        entry = published_version(store, version)
    except (RedisError, OSError) as exc:
        fail(f"cannot read the published config from Redis: {exc}")
    if entry is None:
        fail(f"no published config version {version}")
    return entry


def parsed_published(entry: PublishedConfig, settings: Settings) -> ScoringConfig:
    try:
        return entry.config(settings.window_days)
    except (ValidationError, ValueError) as exc:
        # Written by a release that knows more of the config than this one does.
        detail = " ".join(str(exc).split())
        fail(f"published config version {entry.version} is not valid here: {detail}")


def config_in_force(settings: Settings, store: RedisStore | None) -> tuple[ScoringConfig, str]:
    """The published version, else the local file; and which it is, in words."""
    local = settings_config(settings)
    if store is None:
        return local, local_label(settings)
    try:
        entry = published(store)
    except (RedisError, OSError) as exc:
        say(f"Redis unreachable ({exc}): using the local config", "yellow")
        return local, local_label(settings)
    if entry is None:
        return local, f"{local_label(settings)} (no version published)"
    return parsed_published(entry, settings), f"published version {entry.version}"


def show_command(
    version: Annotated[
        int | None, typer.Option("--version", min=1, help="Show this earlier version")
    ] = None,
    text: Annotated[bool, typer.Option("--text", help="Print the config's YAML too")] = False,
) -> None:
    """The scoring config in force: its version, hash and when it was applied."""
    settings = load_settings()
    store = meta_store(settings)
    try:
        entry = read_published(store) if version is None else earlier_version(store, version)
    finally:
        store.close()
    if entry is None:
        local = settings.config or DEFAULT_CONFIG
        print(f"no version published: workers use their local config ({local_label(settings)})")
        if text:
            print(local.read_text(encoding="utf-8"), end="")
        return
    print(
        f"version {entry.version}, applied {entry.applied_at} from {entry.source}, "
        f"sha256 {entry.sha256[:16]}"
    )
    if text:
        print(entry.text, end="" if entry.text.endswith("\n") else "\n")


def apply_command(
    path: Annotated[Path | None, typer.Argument(help="The config file to put in force")] = None,
    version: Annotated[
        int | None,
        typer.Option("--version", min=1, help="Put an earlier version back in force (roll back)"),
    ] = None,
    allow_window_growth: Annotated[
        bool,
        typer.Option(
            "--allow-window-growth",
            help="Accept a longer window_days (older purchases are no longer held: docs/tiers.md)",
        ),
    ] = False,
) -> None:
    """Validate a config and publish it as the next version: every worker adopts it
    within seconds and re-scores every customer (cause config_update)."""
    if (path is None) == (version is None):
        fail("give a config FILE or --version N")
    settings = load_settings()
    store = meta_store(settings)
    try:
        if version is not None:
            text, source = earlier_version(store, version).text, f"version {version}"
        else:
            assert path is not None
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                fail(f"cannot read {path}: {detail}")
            source = str(path)
        report_problems(text, source)  # exit 2 naming every problem; nothing published
        current = read_published(store)
        before = (
            parsed_published(current, settings)
            if current is not None
            else settings_config(settings)
        )
        grown = window_growth(before, load_config_text(text))
        if grown and not allow_window_growth:
            fail(f"{grown}; pass --allow-window-growth to apply it anyway (docs/tiers.md)")
        try:
            entry = publish(store, text, source)
        except NoChangeError as exc:
            fail(f"nothing to apply: {exc}")
        except ConcurrentApplyError as exc:
            fail(str(exc))
        except RedisError as exc:
            fail(f"cannot publish to Redis: {exc}")
    finally:
        store.close()
    print(
        f"applied {source} as version {entry.version} (sha256 {text_hash(text)[:16]}); "
        "workers adopt it within seconds and re-score every customer (cause config_update)"
    )


def window_growth(before: ScoringConfig, after: ScoringConfig) -> str | None:
    """Why a window change cannot be exact at once, or None: the state holds each
    customer's purchases only as far back as the window in force."""
    old, new = before.window_days, after.window_days
    if old is None or (new is not None and new <= old):
        return None
    target = "lifetime" if new is None else f"{new} days"
    return (
        f"window_days grows from {old} days to {target}: purchases older than {old} days "
        "were dropped from the state and would count only once they are replayed"
    )


def worker_config(settings: Settings, store: RedisStore) -> tuple[ScoringConfig, int]:
    """The config a starting worker scores with, and its published version (0: none).

    The published version wins over the local file; a local file that says otherwise is
    named in one line, so an operator sees at once which rules are in force.
    """
    local = settings_config(settings)
    try:
        entry = published(store)
    except (RedisError, OSError) as exc:  # Redis not up yet: the worker's timer adopts it
        say(f"published config not read yet ({exc}); will retry", "yellow")
        return local, 0
    except (ValueError, KeyError, TypeError) as exc:
        fail(f"the published config in Redis does not parse: {exc}")
    if entry is None:
        return local, 0
    config = parsed_published(entry, settings)
    if config != local:
        say(
            f"the local config ({local_label(settings)}) differs from the published version "
            f"{entry.version} (applied {entry.applied_at}); using the published version",
            "yellow",
        )
    return config, entry.version
