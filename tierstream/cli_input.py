"""What a command is given, parsed and checked: anything wrong is one line and exit 2.

SPEC: hostile input gets one clear line and a defined outcome, never a traceback. Lines
of a history file are the readers' (rejects); this module is for the rest: options,
paths, the scoring config, the environment, output files.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NoReturn, TextIO

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from scoring.config import ScoringConfig
from scoring.events import InputEvent
from tierstream import asof
from tierstream.readers import (
    FORMATS,
    Format,
    Parsed,
    convertible,
    detect_format,
    read_events,
    resolve_path,
)
from tierstream.replay import ReplayStats, collect
from tierstream.settings import FORMER_NAMES, Settings, load_scoring_config

console = Console(stderr=True)


def fail(message: str) -> NoReturn:
    """An expected error (bad option, unreadable file, bad config): one line, exit 2.

    Escaped: messages quote user input and regular expressions, which rich would
    otherwise take for markup ("[a-z]" vanished from "^[a-z][a-z0-9_]{0,63}$"). Not
    wrapped: one complaint stays on one line whatever the terminal's width.
    """
    console.print(f"error: {escape(message)}", style="red", soft_wrap=True, highlight=False)
    raise typer.Exit(2)


def say(message: str, style: str) -> None:
    """One line of diagnostics on stderr, verbatim (see ``fail``)."""
    console.print(escape(message), style=style, soft_wrap=True, highlight=False)


def parse_as_of(value: str | None) -> datetime:
    """A DATE (the as-of day) or an ISO datetime with offset; default: now."""
    if value is None:
        return datetime.now(UTC)
    try:
        return asof.parse_as_of(value)
    except ValueError as exc:
        fail(f"--as-of: {exc}")


def parse_window(value: str | None) -> int | Literal["lifetime"] | None:
    if value is None:
        return None
    if value == "lifetime":
        return "lifetime"
    if value.isdigit() and int(value) > 0:
        return int(value)
    fail(f"--window-days takes a positive integer or 'lifetime', not {value!r}")


def parse_format(value: str) -> Format:
    if value not in FORMATS:
        fail(f"--format must be cdnow, csv, jsonl or parquet, not {value!r}")
    return value


def format_of(path: str, value: str | None) -> Format:
    """``--format`` when given, else what the file name says (``.gz`` aside)."""
    if value is not None:
        return parse_format(value)
    detected = detect_format(path)
    if detected is None:
        fail(f"cannot tell the format of {path} from its name: pass --format")
    return detected


def scoring_config(
    path: Path | None, window_days: int | Literal["lifetime"] | None = None
) -> ScoringConfig:
    """The scoring config, or one line naming the file and what is wrong with it."""
    try:
        return load_scoring_config(path, window_days)
    except OSError as exc:  # FileNotFoundError already names the file
        fail(str(exc) if isinstance(exc, FileNotFoundError) else f"{path}: {exc.strerror}")
    except ValidationError as exc:
        fail(f"invalid scoring config {path or 'default'}: {problems(exc)}")
    except (ValueError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())  # YAML errors point at the spot over lines
        fail(f"invalid scoring config {path or 'default'}: {detail}")


def problems(exc: ValidationError, *, values: bool = True) -> str:
    """pydantic's errors on one line, each with the value given (scalars only) if ``values``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
        + (
            f" (got {err['input']!r})"
            if values and not isinstance(err["input"], dict | list)
            else ""
        )
        for err in exc.errors()
    )


def load_settings() -> Settings:
    """The TIERSTREAM_* settings, or one line saying which is wrong (exit 2)."""
    try:
        return Settings()
    except ValidationError as exc:
        # Without the values: the environment may hold credentials (URLs, the API token).
        text = problems(exc, values=False)
        for name, former in FORMER_NAMES.items():  # pydantic names the new one only
            text = text.replace(f"{name}:", f"{name} (or {' / '.join(former)}):")
        fail(f"invalid TIERSTREAM_ environment settings: {text}")


def settings_config(settings: Settings) -> ScoringConfig:
    return scoring_config(settings.config, settings.window_days)


def read_all(
    path: str, fmt: Format, stats: ReplayStats, *, strict: bool, config: ScoringConfig
) -> list[InputEvent]:
    """Every event of a history file; malformed lines go to ``stats.rejects`` (SPEC).

    A purchase in a currency ``config`` cannot convert is one more malformed line. A path
    that cannot be read at all (missing, a directory, no permission) is one line, exit 2.
    """
    try:
        source = resolve_path(path, fmt)
        parsed: Iterator[Parsed] = read_events(source, fmt, currencies=convertible(config))
        return collect(parsed, stats, strict=strict)
    except OSError as exc:
        fail(f"cannot read {exc.filename or path}: {exc.strerror or exc}")


def open_events(path: str, fmt: Format, config: ScoringConfig) -> Iterator[Parsed]:
    """The parsed lines of a history file, streamed (``read_all`` without the list)."""
    try:
        return read_events(resolve_path(path, fmt), fmt, currencies=convertible(config))
    except OSError as exc:
        fail(f"cannot read {exc.filename or path}: {exc.strerror or exc}")


def open_output(path: Path) -> TextIO:
    """``path`` opened for writing (parents made), or one line and exit 2: a directory or
    a read-only place is the user's to fix, not a traceback."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {exc.filename or path}: {exc.strerror or exc}")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with open_output(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, separators=(",", ":")) + "\n")


# The formats the readers know (tierstream/readers.py's Format), in the help and completion.
FORMAT_CHOICES: tuple[str, ...] = typing.get_args(Format)


def _format_choice(value: str | None) -> str | None:
    """Checked while the command line is parsed, before any work (and still one line)."""
    return value if value is None else parse_format(value)


def format_option() -> Any:
    """The ``--format`` option of every command that reads a history file: a choice."""
    return typer.Option(
        "--format",
        metavar="[" + "|".join(FORMAT_CHOICES) + "]",
        help="History file format: " + ", ".join(FORMAT_CHOICES),
        callback=_format_choice,
        autocompletion=lambda incomplete: [f for f in FORMAT_CHOICES if f.startswith(incomplete)],
    )
