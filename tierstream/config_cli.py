"""``tierstream config``: commands about the scoring configuration (YAML).

``validate`` reads a config the way the worker and ``replay`` do and names every problem
it finds, one per line, so a config is fixed in one pass instead of one error per run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from scoring.config import ScoringConfig, load_config_text
from tierstream.cli_config_problems import report_problems
from tierstream.cli_input import say
from tierstream.settings import DEFAULT_CONFIG

config_app = typer.Typer(
    no_args_is_help=True,
    help="The scoring configuration (YAML): validate, compare (propose), apply, show.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _summary(config: ScoringConfig) -> str:
    window = "lifetime" if config.window_days is None else f"{config.window_days} days"
    tiers = "/".join(level.name for level in config.tiers.levels)
    # A segment may take several rules (Champions has two): count the segments by name.
    names = len({rule.name for rule in config.segments})
    return (
        f"window {window}, scores by {config.scores.method}, tiers {tiers}, "
        f"{names} segments ({len(config.segments)} rules), base currency {config.base_currency}"
    )


@config_app.command("validate")
def validate_command(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="Config file (default: $TIERSTREAM_CONFIG, else the packaged default)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check a scoring config: exit 0 if valid, else exit 2 naming every problem."""
    if path is None and os.environ.get("TIERSTREAM_CONFIG", "").strip():
        path = Path(os.environ["TIERSTREAM_CONFIG"].strip())
    name = str(path) if path is not None else "the packaged default config"
    try:
        text = path.read_text(encoding="utf-8") if path else DEFAULT_CONFIG.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        say(f"error: cannot read {name}: {detail}", "red")
        raise typer.Exit(2) from None
    report_problems(text, name)
    config = load_config_text(text)
    print(f"{name}: valid ({_summary(config)})")


def _register_versioning() -> None:
    """show, apply (tierstream/config_store.py) and propose (tierstream/config_propose.py)."""
    from tierstream.config_propose import propose_command  # noqa: PLC0415
    from tierstream.config_store import apply_command, show_command  # noqa: PLC0415

    config_app.command("show")(show_command)
    config_app.command("apply")(apply_command)
    config_app.command("propose")(propose_command)


_register_versioning()
