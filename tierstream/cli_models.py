"""The scorer and the models the commands score with: the config and behaviour model in force
(published in Redis), or a behaviour snapshot file given on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from scoring.engine import Scorer
from tierstream.cli_input import fail
from tierstream.settings import Settings
from tierstream.stores.base import StateStore

if TYPE_CHECKING:
    from tierstream.stores.redis import RedisStore


def scorer_in_force(settings: Settings, store: RedisStore) -> Scorer:
    """A scorer with the published config version (tierstream config apply), else the local."""
    from tierstream.config_store import config_in_force  # noqa: PLC0415

    return Scorer(config_in_force(settings, store)[0])


def behaviour_snapshot_in_force(store: StateStore) -> Any:
    """The published behaviour snapshot, if one was learned."""
    from tierstream.published import SNAPSHOT_META, Watched, behaviour_snapshot  # noqa: PLC0415

    return Watched(store, SNAPSHOT_META, behaviour_snapshot).read()


def behaviours_option(help_text: str) -> Any:
    """The ``--behaviours FILE`` option of the commands that score with a behaviour snapshot
    file; ``--segments``, its old spelling, keeps working."""
    return typer.Option(
        "--behaviours",
        "--segments",
        help=f"{help_text} (tierstream behaviours --save; --segments is an alias)",
    )


def behaviour_from_file(path: Path) -> Any:
    """The scorer's behaviour model from a snapshot file (tierstream behaviours --save)."""
    from models.snapshot import BehaviourSnapshot  # noqa: PLC0415

    try:
        snapshot = BehaviourSnapshot.from_bytes(path.read_bytes())
    except (OSError, ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
        # A file is anyone's: JSON nested too deep for json.loads (RecursionError) or a
        # number too large for int() (OverflowError) is as wrong as a missing key.
        fail(f"cannot read the behaviour snapshot {path}: {type(exc).__name__}: {exc}")
    return behaviour(snapshot)


def behaviour(snapshot: Any) -> Any:
    """The scorer's behaviour model for a snapshot (None: no behaviour model yet)."""
    if snapshot is None:
        return None
    from tierstream.behaviours import SnapshotBehaviour  # noqa: PLC0415 - needs numpy/models

    return SnapshotBehaviour(snapshot)
