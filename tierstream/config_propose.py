"""``tierstream config propose NEW.yaml``: what a new config would do, before it is applied.

Every customer is scored under the config in force (or ``--current FILE``) and under NEW:
either by two replays of one history file (``--replay PATH``, the events read once), or
from the live state in Redis (``--live``: each stored state is brought to the as-of day
under the config in force, and re-scored under NEW exactly as a worker's ``config_update``
sweep would). Nothing is written anywhere but the requested outputs.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table

from scoring.config import ScoringConfig
from scoring.days import utc_day
from scoring.engine import Scorer
from scoring.profiles import ProfileUpdate
from scoring.quantiles import population_thresholds
from tierstream.cli_input import (
    fail,
    format_option,
    load_settings,
    open_output,
    parse_as_of,
    parse_format,
    say,
    scoring_config,
)
from tierstream.config_compare import Comparison, Placement, change_record, compare, placement
from tierstream.config_store import config_in_force, meta_store
from tierstream.config_versions import with_window
from tierstream.profiles_cli import load_profiles
from tierstream.published import THRESHOLDS_META, Watched, thresholds
from tierstream.readers import Parsed, convertible, read_events, resolve_path
from tierstream.replay import ReplayStats, collect, replay

if TYPE_CHECKING:
    from tierstream.stores.redis import RedisStore

Placements = dict[str, Placement]


def replay_placements(
    path: str,
    fmt: str,
    as_of: datetime,
    configs: tuple[ScoringConfig, ScoringConfig],
    profiles: Sequence[ProfileUpdate] = (),
) -> tuple[Placements, Placements, ReplayStats]:
    """Both configs' placements from one read of the history file (and of the customers'
    trait updates, for plans with trait criteria)."""
    stats = ReplayStats()
    # A purchase only one config can convert would be scored on one side only: both
    # replays take the events both configs accept (the others count as malformed).
    currencies = convertible(configs[0]) & convertible(configs[1])
    try:
        parsed: Iterator[Parsed] = read_events(
            resolve_path(path, parse_format(fmt)), parse_format(fmt), currencies=currencies
        )
        events = collect(parsed, stats, strict=False)
    except OSError as exc:
        fail(f"cannot read {exc.filename or path}: {exc.strerror or exc}")
    sides = []
    for config in configs:
        result = replay(
            events,
            Scorer(config),
            as_of=as_of,
            emit=_drop,
            stats=ReplayStats(),
            profiles=profiles,
        )
        sides.append({cid: placement(result.scorer, s) for cid, s in result.states.items()})
    return sides[0], sides[1], stats


def _drop(change: object) -> None:
    pass


def live_placements(
    store: RedisStore, as_of: datetime, current: Scorer, proposed: ScoringConfig
) -> tuple[Placements, Placements]:
    """Every stored customer under the scorer in force and re-scored under ``proposed``."""
    states = list(store.scan())
    new = Scorer(proposed)
    if proposed.scores.method == "quintiles":  # cut points from the population, as a worker would
        new = new.with_thresholds(population_thresholds(new, states, utc_day(as_of), 1))
    before, after = {}, {}
    for state in states:
        view = state.copy()
        current.advance(view, as_of)
        before[state.customer_id] = placement(current, view)
        view = state.copy()
        new.rescore(view, as_of, "config_update", "proposed config")
        after[state.customer_id] = placement(new, view)
    return before, after


def _published_thresholds(store: RedisStore, scorer: Scorer) -> Scorer:
    if scorer.config.scores.method != "quintiles":
        return scorer
    published = Watched(store, THRESHOLDS_META, thresholds).read()
    return scorer.with_thresholds(published) if published is not None else scorer


def print_comparison(comparison: Comparison, console: Console) -> None:
    for title, matrix in (
        ("Tier migration (rows: before, columns: after)", comparison.tiers),
        ("RFM segment migration (rows: before, columns: after)", comparison.segments),
    ):
        columns = list(next(iter(matrix.values()), {}))
        table = Table(title=title)
        table.add_column("before \\ after")
        for column in columns:
            table.add_column(column, justify="right")
        for row, counts in matrix.items():
            table.add_row(row, *(f"{counts[c]:,}" if counts[c] else "." for c in columns))
        console.print(table)
    table = Table(title="Revenue in each tier (net spend in the window)")
    table.add_column("tier")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    for tier in dict.fromkeys([*comparison.revenue_before, *comparison.revenue_after]):
        table.add_row(
            tier,
            _money(comparison.revenue_before.get(tier)),
            _money(comparison.revenue_after.get(tier)),
        )
    console.print(table)
    moved = sum(1 for _, b, a in comparison.moved if b.tier != a.tier)
    console.print(f"{comparison.customers:,} customers, {moved:,} change tier")


def _money(value: Any) -> str:
    return "-" if value is None else f"{value:,.2f}"


def plot_comparison(comparison: Comparison, path: Path) -> None:
    """Two heatmaps (tiers, segments) of customers moving, one PNG."""
    import matplotlib as mpl  # noqa: PLC0415 - optional dependency ([plots])

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(1, 2, figsize=(16, 7), gridspec_kw={"width_ratios": [1, 2]})
    for axis, title, matrix in (
        (axes[0], "tiers", comparison.tiers),
        (axes[1], "RFM segments", comparison.segments),
    ):
        rows = list(matrix)
        cols = list(next(iter(matrix.values()), {}))
        grid = [[matrix[r][c] for c in cols] for r in rows]
        axis.imshow(grid, cmap="Blues")
        axis.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
        axis.set_yticks(range(len(rows)), rows)
        axis.set_xlabel("after")
        axis.set_ylabel("before")
        axis.set_title(f"Customers by {title}")
        peak = max((v for line in grid for v in line), default=0)
        for i, line in enumerate(grid):
            for j, value in enumerate(line):
                if value:
                    colour = "white" if value > peak / 2 else "black"
                    axis.text(j, i, f"{value:,}", ha="center", va="center", color=colour)
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=100)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")
    finally:
        plt.close(figure)


def propose_command(
    new: Annotated[Path, typer.Argument(help="The proposed config (YAML)")],
    replay_path: Annotated[
        str | None,
        typer.Option("--replay", help="Score this history file ('cdnow' = bundled CDNOW)"),
    ] = None,
    fmt: Annotated[str, format_option()] = "jsonl",
    live: Annotated[bool, typer.Option("--live", help="Score the state held in Redis")] = False,
    as_of: Annotated[str | None, typer.Option(help="Score as of this DATE (default: now)")] = None,
    current: Annotated[
        Path | None,
        typer.Option(help="Compare with this config file instead of the version in force"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    changes_out: Annotated[
        Path | None, typer.Option(help="Write the customers whose tier or segment moves (JSONL)")
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Draw the migration heatmaps (PNG)")] = None,
    profiles: Annotated[
        Path | None,
        typer.Option(
            help="With --replay: customer traits (JSONL profile updates) for trait criteria"
        ),
    ] = None,
) -> None:
    """What NEW would do: migration matrices of tiers and segments, revenue per tier,
    the customers who move. Nothing is applied."""
    if (replay_path is None) == (not live):
        fail("give exactly one of --replay PATH or --live")
    if profiles is not None and live:
        fail("--profiles goes with --replay: with --live the traits are those held in Redis")
    if plot is not None and importlib.util.find_spec("matplotlib") is None:
        fail("--plot draws with matplotlib: pip install 'tierstream[plots]'")
    moment = parse_as_of(as_of)
    settings = load_settings()
    proposed = with_window(scoring_config(new), settings.window_days)
    handle = open_output(changes_out) if changes_out is not None else None
    store = meta_store(settings) if live or current is None else None
    if live:
        assert store is not None
        try:
            store.ping()
        except RedisError as exc:
            fail(f"--live needs Redis: {exc}")
    if current is not None:
        in_force, label = with_window(scoring_config(current), settings.window_days), str(current)
    else:
        in_force, label = config_in_force(settings, store)
    say(f"current: {label}; proposed: {new}", "dim")
    if live:
        assert store is not None
        try:
            scorer = _published_thresholds(store, Scorer(in_force))
            before, after = live_placements(store, moment, scorer, proposed)
        except RedisError as exc:
            fail(f"cannot read the state from Redis: {exc}")
        finally:
            store.close()
    else:
        if store is not None:
            store.close()
        assert replay_path is not None
        updates = load_profiles(profiles) if profiles is not None else []
        before, after, stats = replay_placements(
            replay_path, fmt, moment, (in_force, proposed), updates
        )
        if stats.rejected:
            say(f"{stats.rejected:,} malformed lines skipped", "yellow")
    comparison = compare(before, after, in_force, proposed)
    if handle is not None:
        with handle:
            for customer_id, old, moved in comparison.moved:
                record = change_record(customer_id, old, moved)
                handle.write(json.dumps(record, separators=(",", ":")) + "\n")
    if plot is not None:
        plot_comparison(comparison, plot)
    if as_json:
        print(json.dumps(comparison.to_json()))
    else:
        print_comparison(comparison, Console(width=max(220, Console().width)))
