"""The ``tierstream`` command line."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from scoring.days import utc_day
from scoring.engine import AsOfError, Change, Scorer
from tierstream.accounts import AccountBook, export_accounts
from tierstream.audience_cli import register as register_audience_command
from tierstream.cli_app import TierstreamApp
from tierstream.cli_backfill import backfill_command
from tierstream.cli_input import (
    console,
    fail,
    format_option,
    load_settings,
    open_events,
    open_output,
    parse_as_of,
    parse_format,
    parse_window,
    read_all,
    say,
    scoring_config,
    settings_config,
    write_jsonl,
)
from tierstream.cli_kpis import clv_from_file, published_clv
from tierstream.cli_kpis import register as register_kpi_commands
from tierstream.cli_models import (
    behaviour_from_file,
    behaviour_snapshot_in_force,
    behaviours_option,
    scorer_in_force,
)
from tierstream.cli_privacy import erase_command
from tierstream.clv import record_fields
from tierstream.deliver_cli import register as register_deliver_command
from tierstream.ordering import TimeOrdered
from tierstream.profiles_cli import load_profiles
from tierstream.readers import Reject
from tierstream.replay import ReplayStats, StrictReplayError, replay, valid_events
from tierstream.report import print_report
from tierstream.stores.base import StateStore
from tierstream.stores.from_settings import redis_store

app = TierstreamApp(
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from tierstream import __version__  # noqa: PLC0415

        print(f"tierstream {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Show the version and exit"
        ),
    ] = False,
) -> None:
    """tierstream: streaming RFM tiers and segments with explained tier-change events."""


def _register_subcommands() -> None:
    """Command groups defined in modules of their own."""
    from tierstream.config_cli import config_app  # noqa: PLC0415
    from tierstream.topics_cli import topics_app  # noqa: PLC0415

    app.add_typer(config_app, name="config")
    app.add_typer(topics_app, name="topics")


_register_subcommands()


@app.command("replay")
def replay_command(
    path: Annotated[
        str,
        typer.Argument(help="History file; for --format cdnow, 'cdnow' = the bundled CDNOW file"),
    ],
    fmt: Annotated[str, format_option()] = "jsonl",
    as_of: Annotated[str | None, typer.Option(help="Score as of this DATE (default: now)")] = None,
    window_days: Annotated[
        str | None, typer.Option(help="N days or 'lifetime' (default: config)")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Scoring config YAML")] = None,
    state_out: Annotated[
        Path | None, typer.Option(help="Write every customer's state (JSONL)")
    ] = None,
    changes_out: Annotated[
        Path | None, typer.Option(help="Write every tier change (JSONL)")
    ] = None,
    rejects_out: Annotated[Path | None, typer.Option(help="Write malformed lines (JSONL)")] = None,
    accounts_out: Annotated[
        Path | None, typer.Option(help="Write every B2B account's state (JSONL)")
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Stop with exit 1 at the first malformed line")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar or report")] = False,
    show_changes: Annotated[int, typer.Option(help="Print this many tier changes")] = 10,
    behaviours: Annotated[
        Path | None, behaviours_option("Assign behaviour segments with this snapshot")
    ] = None,
    clv: Annotated[
        Path | None,
        typer.Option(help="Add p_alive and clv_12m to --state-out (tierstream clv fit --save)"),
    ] = None,
    profiles: Annotated[
        Path | None,
        typer.Option(help="Customer traits (JSONL profile updates), merged in time order"),
    ] = None,
) -> None:
    """Replay a purchase history through the scoring core (no Kafka or Redis needed).

    Streams: events are put in time order by an external sort, and changes and rejects
    are written as they come; only the per-customer states are held.
    """
    source_format = parse_format(fmt)
    config_used = scoring_config(config, parse_window(window_days))
    moment = parse_as_of(as_of)
    behaviour = behaviour_from_file(behaviours) if behaviours is not None else None
    clv_snapshot = clv_from_file(clv) if clv is not None else None
    stats = ReplayStats()
    updates = load_profiles(profiles) if profiles is not None else []
    parsed = open_events(path, source_format, config_used)
    # Output files are opened before the replay: a bad path is one line, exit 2, at once.
    changes_file = open_output(changes_out) if changes_out is not None else None
    rejects_file = open_output(rejects_out) if rejects_out is not None else None
    accounts_file = open_output(accounts_out) if accounts_out is not None else None
    emitted_at = datetime.now(UTC)
    shown: list[Change] = []

    def emit(change: Change) -> None:
        if changes_file is not None:
            changes_file.write(dumps_line(change.to_json(emitted_at)))
        if len(shown) < show_changes:
            shown.append(change)

    def on_reject(reject: Reject) -> None:
        if rejects_file is not None:
            rejects_file.write(
                dumps_line({"line": reject.line, "error": reject.error, "raw": reject.raw})
            )

    accounts = AccountBook(config_used, emit)
    try:
        with Progress(
            TextColumn("replaying: {task.completed:,} events"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(),
            console=console,
            disable=quiet,
            transient=True,
        ) as bar:
            task = bar.add_task("replay", total=None)
            result = replay(
                valid_events(parsed, stats, strict=strict, on_reject=on_reject),
                Scorer(config_used, behaviour=behaviour),
                as_of=moment,
                emit=emit,
                stats=stats,
                progress=lambda done: bar.update(task, completed=done, total=stats.total),
                profiles=updates,
                accounts=accounts,
            )
    except StrictReplayError as exc:
        say(f"malformed input, stopping (--strict): {exc}", "red")
        raise typer.Exit(1) from None
    finally:
        for handle in (changes_file, rejects_file):
            if handle is not None:
                handle.close()
    if accounts_file is not None:
        with accounts_file:
            accounts_file.writelines(dumps_line(row) for row in accounts.records())
    records = [result.scorer.record(s) for s in result.states.values()]
    if state_out is not None:
        if clv_snapshot is not None:
            day = utc_day(moment)
            for record, state in zip(records, result.states.values(), strict=True):
                record.update(record_fields(clv_snapshot, state, day))
        write_jsonl(state_out, records)
    if not quiet:
        for change in shown:
            console.print(
                f"{change.occurred_at.date()} {change.customer_id} v{change.version} "
                f"{change.previous_tier or '(new)'}→{change.new_tier} [{change.new_segment}] "
                f"({change.cause}): {change.reason}"
            )
        if stats.changes > len(shown):
            console.print(f"... {stats.changes - len(shown):,} more tier changes")
        print_report(console, records)
    for reject in stats.rejects[:20]:
        say(f"line {reject.line}: {reject.error}", "yellow")
    if stats.rejected > 20:
        say(f"... {stats.rejected - 20:,} more malformed lines", "yellow")
    summary = {
        "events": stats.events,
        "applied": stats.applied,
        "duplicates": stats.duplicates,
        "outside_window": stats.outside_window,
        "after_as_of": stats.after_as_of,
        "rejected": stats.rejected,
        "customers": len(records),
        "tier_changes": stats.changes,
        **(
            {"accounts": len(accounts.accounts), "account_changes": accounts.changes}
            if accounts.accounts
            else {}
        ),
        "seconds": round(stats.seconds, 3),
        "events_per_second": round(stats.events_per_second),
        "as_of": moment.isoformat(),
    }
    if profiles is not None:
        summary |= {"profiles": stats.profiles, "stale_profiles": stats.stale_profiles}
    print(json.dumps(summary), file=sys.stdout)


def dumps_line(row: dict[str, Any]) -> str:
    """One JSONL line, as ``write_jsonl`` writes them."""
    return json.dumps(row, separators=(",", ":")) + "\n"


def _add_behaviour(
    record: dict[str, Any], snapshot: Any, scorer: Scorer, state: Any, moment: datetime
) -> None:
    if snapshot is None:
        return
    from tierstream.behaviours import behaviour_record  # noqa: PLC0415

    record["behaviour"] = behaviour_record(snapshot, scorer, state, moment)


@app.command("worker")
def worker_command(
    loglevel: Annotated[str, typer.Option(help="debug | info | warning")] = "info",
    processes: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes to run (one per core is the rule); they join one "
            "consumer group and divide the partitions. Exits when any exits with an error.",
        ),
    ] = 1,
) -> None:
    """The streaming worker (Faust): consumes purchases and engagements, emits tier changes.

    Configured by environment variables with the TIERSTREAM_ prefix (see the README).
    """
    settings = load_settings()  # a bad setting is one line before any process starts
    if processes > 1:
        from tierstream.processes import run_processes  # noqa: PLC0415

        raise typer.Exit(run_processes(processes, loglevel))
    from tierstream.bootstrap import run_worker  # noqa: PLC0415 - Faust only for the worker

    run_worker(settings, loglevel)


@app.command("repartition")
def repartition_command(
    to: Annotated[int, typer.Option("--to", min=1, help="The new partition count")],
) -> None:
    """Move the stored state to N partitions, after the input topics were given N.

    Stop every worker first; resumable; verified. See docs/operations.md.
    """
    from tierstream.repartition_cli import run  # noqa: PLC0415 - Kafka and Redis only here

    run(load_settings(), to)


@app.command("serve")
def serve_command() -> None:
    """The HTTP API and dashboard over the Redis state (TIERSTREAM_API_* settings)."""
    from tierstream.serve import run_serve  # noqa: PLC0415 - aiohttp only needed here

    run_serve(load_settings())


@app.command(
    "bench",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def bench_command(ctx: typer.Context) -> None:
    """Benchmarks against Kafka and Redis (options: tierstream bench --help)."""
    import importlib.util  # noqa: PLC0415

    missing = [m for m in ("matplotlib", "pyinstrument") if importlib.util.find_spec(m) is None]
    if missing:  # runtime installs leave the benchmark tooling out
        fail(f"tierstream bench needs {', '.join(missing)}: pip install 'tierstream[bench]'")
    from tierstream.bench_checkout import NOT_A_CHECKOUT, bench_main  # noqa: PLC0415

    main = bench_main()
    if main is None:
        fail(NOT_A_CHECKOUT)
    raise typer.Exit(main(list(ctx.args)))


@app.command("produce")
def produce_command(
    path: Annotated[str, typer.Argument(help="History file; 'cdnow' = the bundled CDNOW file")],
    fmt: Annotated[str, format_option()] = "jsonl",
    rate: Annotated[
        float | None,
        typer.Option(min=0.001, help="Events per second (default: as fast as possible)"),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="Send at most this many events")] = None,
    shift_to_now: Annotated[
        bool,
        typer.Option(
            "--shift-to-now",
            help="Move the whole history by whole days so that it ends today (live demos: "
            "a worker on the wall clock sees recent customers, not 1998's)",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar")] = False,
) -> None:
    """Publish a history file to the input topics, in event-time order, keyed by customer."""
    from collections.abc import Iterable  # noqa: PLC0415

    from kafka.errors import KafkaError  # noqa: PLC0415 - Kafka client only needed here

    from streams.producer import produce  # noqa: PLC0415
    from tierstream.shift import days_to_now, shift_days  # noqa: PLC0415

    source_format = parse_format(fmt)
    settings = load_settings()
    stats = ReplayStats()
    # The worker's config decides which currencies it can convert: others would only be
    # dead-lettered there, so they are rejects here, as in a replay.
    parsed = open_events(path, source_format, settings_config(settings))
    # In event-time order without holding the file (tierstream/ordering.py).
    events = islice(TimeOrdered(valid_events(parsed, stats, strict=False)), limit)
    started = time.monotonic()
    sending: Iterable[Any] = events
    if shift_to_now:
        history = list(events)  # the shift needs the last event's day before the first send
        shifted = days_to_now(history)
        sending = shift_days(history, shifted)
        say(f"history shifted by {shifted:,} days to end today", "default")
    try:
        with Progress(
            TextColumn("producing to " + settings.kafka_bootstrap),
            BarColumn(),
            TextColumn("{task.completed:,} events"),
            TimeRemainingColumn(),
            console=console,
            disable=quiet,
            transient=True,
        ) as bar:
            total = len(sending) if isinstance(sending, list) else None
            task = bar.add_task("produce", total=total)
            sent = produce(
                settings.kafka_bootstrap,
                sending,
                purchases_topic=settings.topic_purchases,
                engagements_topic=settings.topic_engagements,
                rate=rate,
                progress=lambda done: bar.update(task, completed=done),
                **settings.client_options(),
            )
    except KafkaError as exc:
        fail(f"cannot produce to {settings.kafka_bootstrap}: {type(exc).__name__}: {exc}")
    seconds = time.monotonic() - started
    print(json.dumps({"sent": sent, "rejected": stats.rejected, "seconds": round(seconds, 2)}))


@app.command("behaviours")
def behaviours_command(
    replay_path: Annotated[
        str | None, typer.Option("--replay", help="Learn from a replayed file instead of Redis")
    ] = None,
    fmt: Annotated[str, format_option()] = "cdnow",
    as_of: Annotated[
        str | None, typer.Option(help="Features as of this DATE (default: now)")
    ] = None,
    k: Annotated[int, typer.Option(help="Number of behaviours")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the learning order and the model")] = 0,
    publish: Annotated[bool, typer.Option(help="Store the new snapshot (Redis mode)")] = True,
    save: Annotated[
        Path | None,
        typer.Option(help="Also write the snapshot to this file (for replay --behaviours)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    show: Annotated[
        bool,
        typer.Option("--show", help="Only show the model in force and what it was learned from"),
    ] = False,
) -> None:
    """Learn the behaviour segments and show them: sizes, centroids, labels, drift."""
    if show:
        from tierstream.cli_learning import show_learned  # noqa: PLC0415

        store_shown = redis_store(load_settings())
        try:
            show_learned(store_shown, as_json)
        finally:
            store_shown.close()
        return
    from models.features import to_original_units  # noqa: PLC0415
    from tierstream.behaviours import SNAPSHOT_META, learn_snapshot  # noqa: PLC0415

    moment = parse_as_of(as_of)
    store: StateStore | None = None
    previous = None
    if replay_path is not None:
        config_used = scoring_config(None)
        stats = ReplayStats()
        events = read_all(replay_path, parse_format(fmt), stats, strict=False, config=config_used)
        result = replay(events, Scorer(config_used), as_of=moment, emit=lambda c: None, stats=stats)
        scorer, states = result.scorer, list(result.states.values())
    else:
        settings = load_settings()
        scorer = Scorer(settings_config(settings))
        store = redis_store(settings)
        states = list(store.scan())
        previous = behaviour_snapshot_in_force(store)
    try:
        learned = learn_snapshot(scorer, states, moment, previous=previous, k=k, seed=seed)
    except ValueError as exc:  # too few customers for k behaviours, or k < 1: say so
        if store is not None:
            store.close()
        fail(f"cannot learn {k} behaviours: {exc}")
    snapshot = learned.snapshot
    payload = snapshot.to_bytes()
    if save is not None:
        open_output(save).close()  # one line and exit 2 if it cannot be written
        save.write_bytes(payload)
    if store is not None:
        if publish:
            store.set_meta(SNAPSHOT_META, payload)
        store.close()
    rows: list[dict[str, Any]] = []
    total = sum(learned.sizes.values()) or 1
    for behaviour in snapshot.behaviours:
        centroid = to_original_units(
            dict(zip(snapshot.feature_names, behaviour.centroid, strict=True))
        )
        rows.append(
            {
                "segment_id": behaviour.behaviour_id,  # the output's name, kept
                "label": behaviour.label,
                "customers": learned.sizes.get(behaviour.behaviour_id, 0),
                "share": learned.sizes.get(behaviour.behaviour_id, 0) / total,
                "centroid": {key: round(value, 2) for key, value in centroid.items()},
            }
        )
    drift: list[dict[str, Any]] = [
        {"segment_id": d.behaviour_id, "flags": list(d.flags), "centroid_shift": d.centroid_shift}
        for d in (learned.drift.behaviours if learned.drift else ())
        if d.flags
    ]
    if as_json:
        print(json.dumps({"version": snapshot.version, "segments": rows, "drift": drift}))
        return
    table = Table(title=f"Behaviour segments, model version {snapshot.version}")
    from tierstream.cli_learning import fill_behaviour_table  # noqa: PLC0415

    fill_behaviour_table(table, rows)
    Console(width=max(120, Console().width)).print(table)
    for item in drift:
        say(f"behaviour {item['segment_id']}: {', '.join(item['flags'])}", "default")


# The command's first name, kept as an alias: the same options and the same output.
app.command("segments", help="Alias of `tierstream behaviours` (its former name).")(
    behaviours_command
)


@app.command("export")
def export_command(
    state_out: Annotated[Path, typer.Option(help="Write every customer's state here (JSONL)")],
    as_of: Annotated[str | None, typer.Option(help="Score as of this DATE (default: now)")] = None,
    entity: Annotated[
        str, typer.Option(help="customer, or account: every B2B account's record")
    ] = "customer",
) -> None:
    """Dump every customer's (or account's) state from Redis, as of a date."""
    moment = parse_as_of(as_of)
    if entity not in ("customer", "account"):
        fail(f"--entity must be customer or account, not {entity!r}")
    settings = load_settings()
    handle = open_output(state_out)  # before Redis: a bad path is one line, exit 2
    if entity == "account":
        with handle:
            count, problems = export_accounts(settings, handle, moment)
        for problem in problems:
            say(problem, "yellow")
        print(
            json.dumps({"accounts": count, "skipped": len(problems), "as_of": moment.isoformat()})
        )
        if problems:
            raise typer.Exit(1)
        return
    store = redis_store(settings)
    scorer = scorer_in_force(settings, store)
    snapshot = behaviour_snapshot_in_force(store)
    clv = published_clv(store)
    count = 0
    errors = 0
    with handle:
        for state in store.scan():
            try:
                record = scorer.record(state, moment)
            except AsOfError as exc:
                errors += 1
                say(str(exc), "yellow")
                continue
            _add_behaviour(record, snapshot, scorer, state, moment)
            record.update(record_fields(clv, state, utc_day(moment)))
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")
            count += 1
    store.close()
    print(json.dumps({"customers": count, "skipped": errors, "as_of": moment.isoformat()}))
    if errors:
        raise typer.Exit(1)


@app.command("customer")
def customer_command(
    customer_id: Annotated[str, typer.Argument(help="The customer id")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    as_of: Annotated[str | None, typer.Option(help="As of this DATE (default: now)")] = None,
) -> None:
    """One customer's current state, and why they are in their tier and segment."""
    moment = parse_as_of(as_of)  # before Redis: a bad --as-of is one line, exit 2
    settings = load_settings()
    store = redis_store(settings)
    scorer = scorer_in_force(settings, store)
    state = store.get(customer_id)
    snapshot = behaviour_snapshot_in_force(store)
    clv = published_clv(store)
    store.close()
    if state is None:
        say(f"unknown customer: {customer_id}", "red")
        raise typer.Exit(1)
    try:
        record = scorer.record(state, moment)
    except AsOfError:
        record = scorer.record(state)
    record["why"] = scorer.explain(state)
    _add_behaviour(record, snapshot, scorer, state, moment)
    record.update(record_fields(clv, state, max(utc_day(moment), state.clock_day or 0)))
    if as_json:
        print(json.dumps(record))
        return
    from tierstream.customer_view import customer_table  # noqa: PLC0415

    Console(width=max(100, Console().width)).print(customer_table(record))


register_kpi_commands(app)  # clv fit, report, review (tierstream/cli_kpis.py)
register_deliver_command(app)  # deliver (tierstream/deliver_cli.py)
register_audience_command(app)  # audience (tierstream/audience_cli.py)


app.command("erase")(erase_command)
app.command("backfill")(backfill_command)

if __name__ == "__main__":
    app()
