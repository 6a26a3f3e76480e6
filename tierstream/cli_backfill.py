"""The ``backfill`` command: a history file straight into the Redis store."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from scoring.engine import Scorer
from tierstream.cli_input import (
    console,
    fail,
    format_of,
    load_settings,
    open_events,
    settings_config,
)
from tierstream.ordering import TimeOrdered
from tierstream.readers import resolve_path
from tierstream.replay import ReplayStats, valid_events


def backfill_command(
    path: Annotated[
        str, typer.Argument(help="History file (.gz too); 'cdnow' = the bundled CDNOW")
    ],
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="cdnow | csv | jsonl | parquet (default: from the name)"),
    ] = None,
    queue_changes: Annotated[
        bool,
        typer.Option(help="Also queue the tier changes found for publication on tier-changes"),
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar")] = False,
) -> None:
    """Load a history straight into the Redis store, as the worker would have applied it.

    Resumable: run it again after an interruption (even kill -9) and it goes on from its
    checkpoint without counting anything twice. Stop the workers while it runs.
    """
    from redis.exceptions import RedisError  # noqa: PLC0415

    from tierstream.accounts import account_store  # noqa: PLC0415
    from tierstream.backfill import Backfill, source_id  # noqa: PLC0415
    from tierstream.backfill_accounts import AccountSink  # noqa: PLC0415
    from tierstream.stores.from_settings import redis_store  # noqa: PLC0415 - Redis when used

    source_format = format_of(path, fmt)
    settings = load_settings()
    config = settings_config(settings)
    parsed = open_events(path, source_format, config)  # a bad path: one line, exit 2
    source = source_id(resolve_path(path, source_format), source_format)
    stats = ReplayStats()
    store = redis_store(settings)
    account_states = account_store(settings)
    try:
        from tierstream.audiences import mark_if_fresh  # noqa: PLC0415

        mark_if_fresh(store)  # an empty store keeps its audience sizes from the start
        accounts = AccountSink(account_states, config)
        job = Backfill(
            store, Scorer(config), source, queue_changes=queue_changes, accounts=accounts
        )
        events = TimeOrdered(valid_events(parsed, stats, strict=False))
        with Progress(
            SpinnerColumn(),
            TextColumn("backfill"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>8,.0f} events/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=quiet,
        ) as bar:
            task = bar.add_task("backfill", total=None, rate=0.0)

            def progress(done: int, total: int | None) -> None:
                elapsed = bar.tasks[0].elapsed or 0.0
                rate = done / elapsed if elapsed > 0 else 0.0
                bar.update(task, completed=done, total=total, rate=rate)

            result = job.run(events, progress)
    except (OSError, RedisError) as exc:
        fail(f"backfill stopped: {type(exc).__name__}: {exc} (run it again to resume)")
    finally:
        store.close()
        account_states.close()
    summary = {
        "source": source,
        "events": result.events,
        "already_backfilled": result.already,
        "applied": result.applied,
        "duplicates": result.duplicates,
        "outside_window": result.outside_window,
        "dead_letters": result.dead_letters,
        "rejected": stats.rejected,
        "tier_changes": result.changes,
        "account_updates": accounts.updates,
        "account_changes": accounts.changes,
        "commits": result.commits,
        "seconds": round(result.seconds, 3),
        "events_per_second": round(result.events_per_second),
    }
    print(json.dumps(summary))
