"""Commands of lifetime value, KPIs and the segment review: ``clv fit``, ``report``, ``review``.

Each reads every customer's state from Redis (the TIERSTREAM_* settings) or, with
``--replay PATH``, from a history file replayed in memory. Anything wrong with the input
is one line and exit 2 (``tierstream.cli_input.fail``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from scoring.days import utc_day
from scoring.engine import Change, Scorer
from scoring.state import CustomerState
from tierstream.cli_input import (
    fail,
    load_settings,
    open_output,
    parse_as_of,
    parse_format,
    read_all,
    say,
    scoring_config,
)
from tierstream.cli_models import (
    behaviour_from_file,
    behaviour_snapshot_in_force,
    behaviours_option,
    scorer_in_force,
)
from tierstream.clv import CLV_META, ClvSnapshot, ClvSnapshotError, NotEnoughDataError
from tierstream.published import Watched
from tierstream.replay import ReplayStats, replay

if TYPE_CHECKING:
    from models.snapshot import BehaviourSnapshot
    from tierstream.stores.redis import RedisStore

clv_app = typer.Typer(no_args_is_help=True, help="Customer lifetime value (BG/NBD, Gamma-Gamma).")

ReplayOption = Annotated[
    str | None, typer.Option("--replay", help="Read a replayed history file instead of Redis")
]
FormatOption = Annotated[
    str, typer.Option("--format", help="with --replay: cdnow | csv | jsonl | parquet")
]
AsOfOption = Annotated[str | None, typer.Option(help="As of this DATE (default: now)")]
ConfigOption = Annotated[Path | None, typer.Option(help="with --replay: scoring config YAML")]
BehavioursOption = Annotated[
    Path | None, behaviours_option("with --replay: assign behaviour segments with this snapshot")
]


@dataclass
class Source:
    """Every customer's state and what goes with it, from Redis or a replay."""

    scorer: Scorer
    states: list[CustomerState]
    as_of: datetime
    behaviours: BehaviourSnapshot | None = None
    clv: ClvSnapshot | None = None
    store: RedisStore | None = None
    changes: list[Change] = field(default_factory=list)  # replay only: every tier change

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None


def load_source(
    replay_path: str | None,
    fmt: str,
    as_of: str | None,
    config: Path | None,
    behaviours: Path | None = None,
) -> Source:
    moment = parse_as_of(as_of)
    if replay_path is not None:
        source_format = parse_format(fmt)
        config_used = scoring_config(config)
        behaviour = behaviour_from_file(behaviours) if behaviours is not None else None
        stats = ReplayStats()
        events = read_all(replay_path, source_format, stats, strict=False, config=config_used)
        changes: list[Change] = []
        scorer = Scorer(config_used, behaviour=behaviour)
        result = replay(events, scorer, as_of=moment, emit=changes.append, stats=stats)
        snapshot = behaviour.snapshot if behaviour is not None else None
        states = list(result.states.values())
        return Source(result.scorer, states, moment, snapshot, changes=changes)
    if config is not None or behaviours is not None:
        fail(
            "--config and --behaviours go with --replay; the Redis state is scored with "
            "the config in force (tierstream config show) and the published behaviour model"
        )
    from tierstream.stores.from_settings import redis_store  # noqa: PLC0415

    settings = load_settings()
    store = redis_store(settings)
    scorer = scorer_in_force(settings, store)  # the published config version, if any
    states = list(store.scan())
    return Source(
        scorer,
        states,
        moment,
        behaviour_snapshot_in_force(store),
        published_clv(store),
        store=store,
    )


def published_clv(store: Any) -> ClvSnapshot | None:
    """The published lifetime value snapshot (None: none yet, or one that does not parse)."""

    def parse(raw: bytes) -> ClvSnapshot | None:
        try:
            return ClvSnapshot.from_bytes(raw)
        except ClvSnapshotError as exc:
            say(f"the published lifetime value snapshot is unusable: {exc}", "yellow")
            return None

    return Watched(store, CLV_META, parse).read()


def clv_from_file(path: Path) -> ClvSnapshot:
    try:
        return ClvSnapshot.from_bytes(path.read_bytes())
    except OSError as exc:
        fail(f"cannot read the lifetime value snapshot {path}: {exc.strerror or exc}")
    except ClvSnapshotError as exc:
        fail(f"{path}: {exc}")


@clv_app.command("fit")
def clv_fit_command(
    replay_path: ReplayOption = None,
    fmt: FormatOption = "cdnow",
    as_of: AsOfOption = None,
    config: ConfigOption = None,
    publish: Annotated[bool, typer.Option(help="Store the new snapshot (Redis mode)")] = True,
    save: Annotated[
        Path | None, typer.Option(help="Also write the snapshot to this file (JSON)")
    ] = None,
) -> None:
    """Fit BG/NBD and Gamma-Gamma on every customer and publish a versioned snapshot."""
    from tierstream.clv import features_of, fit  # noqa: PLC0415 - pandas/lifetimes

    handle = open_output(save) if save is not None else None  # a bad path: exit 2 first
    source = load_source(replay_path, fmt, as_of, config)
    previous = source.clv.version if source.clv is not None else 0
    features = features_of(source.states, utc_day(source.as_of))
    try:
        snapshot = fit(features, source.scorer.config.clv, source.as_of, previous_version=previous)
    except NotEnoughDataError as exc:
        source.close()
        if handle is not None and save is not None:
            handle.close()
            save.unlink(missing_ok=True)  # no half-made snapshot file left behind
        say(f"not enough data to fit lifetime value: {exc}; nothing published", "red")
        raise typer.Exit(2) from None
    if handle is not None:
        with handle:
            handle.write(snapshot.to_bytes().decode() + "\n")
    if source.store is not None and publish:
        source.store.set_meta(CLV_META, snapshot.to_bytes())
    source.close()
    print(json.dumps(snapshot.to_dict()))


def report_command(
    out: Annotated[Path, typer.Option(help="Write the report here (one HTML file)")],
    replay_path: ReplayOption = None,
    fmt: FormatOption = "cdnow",
    as_of: AsOfOption = None,
    config: ConfigOption = None,
    behaviours: BehavioursOption = None,
    clv: Annotated[
        Path | None,
        typer.Option(
            help="Lifetime value snapshot file (default: the published one; with "
            "--replay, one fitted on the replayed state)"
        ),
    ] = None,
) -> None:
    """KPIs by tier, RFM segment and behaviour as one self-contained HTML file with plots."""
    import importlib.util  # noqa: PLC0415

    if importlib.util.find_spec("matplotlib") is None:  # runtime installs leave plotting out
        fail("tierstream report draws its plots with matplotlib: pip install 'tierstream[plots]'")
    from tierstream.report_html import render_report  # noqa: PLC0415 - matplotlib

    handle = open_output(out)
    source = load_source(replay_path, fmt, as_of, config, behaviours)
    source.close()
    if clv is not None:
        source.clv = clv_from_file(clv)
    elif replay_path is not None:
        source.clv = fit_quietly(source)
    html = render_report(source.scorer, source.states, source.as_of, source.behaviours, source.clv)
    with handle:
        handle.write(html)
    print(json.dumps({"report": str(out), "customers": len(source.states)}))


def fit_quietly(source: Source) -> ClvSnapshot | None:
    """A snapshot fitted on the replayed state, or None (said on stderr) when it cannot be."""
    from tierstream.clv import features_of, fit  # noqa: PLC0415

    try:
        features = features_of(source.states, utc_day(source.as_of))
        return fit(features, source.scorer.config.clv, source.as_of)
    except NotEnoughDataError as exc:
        say(f"no lifetime value in the report: {exc}", "yellow")
        return None


def review_command(
    since: Annotated[
        str | None,
        typer.Option(
            help="Compare with the latest review made on or before this DATE "
            "(default: the latest review)"
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the review here (JSON)")] = None,
    history: Annotated[
        Path | None,
        typer.Option(
            help="Keep the review history in this JSON file (default: in the store; "
            "required with --replay)"
        ),
    ] = None,
    replay_path: ReplayOption = None,
    fmt: FormatOption = "cdnow",
    as_of: AsOfOption = None,
    config: ConfigOption = None,
    behaviours: BehavioursOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the review as JSON")] = False,
) -> None:
    """Review the RFM and behaviour segments: trends, flows, merge/split/retire suggestions."""
    from tierstream import review  # noqa: PLC0415

    since_moment = parse_as_of(since) if since is not None else None
    if replay_path is not None and history is None:
        fail("--replay needs --history FILE: the review history is kept there")
    handle = open_output(out) if out is not None else None
    source = load_source(replay_path, fmt, as_of, config, behaviours)
    keeper: review.History
    if history is not None:
        keeper = review.FileHistory(history)
    else:
        assert source.store is not None
        keeper = review.StoreHistory(source.store)
    try:
        earlier = keeper.load()
    except review.HistoryError as exc:
        source.close()
        fail(str(exc))
    if replay_path is not None:
        source.clv = fit_quietly(source)  # a replay has no published model: fit one
    previous = review.pick_previous(earlier, since_moment)
    tallies = source.store.tallies() if source.store is not None else None
    result = review.make_review(
        source.scorer,
        source.states,
        source.as_of,
        previous=previous,
        behaviours=source.behaviours,
        clv=source.clv,
        tallies=tallies,
        changes=source.changes if replay_path is not None else None,
    )
    try:
        keeper.append(result)
    except OSError as exc:
        source.close()
        fail(f"cannot keep the review history: {exc}")
    source.close()
    if handle is not None:
        with handle:
            handle.write(json.dumps(result, indent=1) + "\n")
    if as_json:
        print(json.dumps(result))
    else:
        review.print_review(result)


def register(app: typer.Typer) -> None:
    """Add these commands to the ``tierstream`` application."""
    app.add_typer(clv_app, name="clv")
    app.command("report")(report_command)
    app.command("review")(review_command)
